// Shared by the kafkajs scripts the tests run: a client for the bootstrap address given on the
// command line, JSON on stdout, and a failure printed as one JSON line with kafkajs's error.
'use strict'
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

// KAFKAJS_SECURITY (JSON) secures the client: {"ssl": {"ca", "cert", "key"}, "sasl": {...}},
// the PEM files by path (one file may hold both the key and its certificate chain).
function security() {
  if (!process.env.KAFKAJS_SECURITY) return {}
  const { ssl, sasl } = JSON.parse(process.env.KAFKAJS_SECURITY)
  const read = (path) => fs.readFileSync(path, 'utf8')
  const options = {}
  if (ssl) {
    options.ssl = { ca: [read(ssl.ca)] }
    if (ssl.cert) Object.assign(options.ssl, { cert: read(ssl.cert), key: read(ssl.key) })
  }
  if (sasl) options.sasl = sasl
  return options
}

function kafka(bootstrap, clientId = 'headrace-kafkajs-test') {
  return new Kafka({
    clientId,
    brokers: bootstrap.split(','),
    ...security(),
    logLevel: logLevel[process.env.KAFKAJS_LOG_LEVEL || 'WARN'],  // DEBUG logs every request
    logCreator: () => ({ namespace, level, log }) =>
      process.stderr.write(`${namespace} ${JSON.stringify(log)}\n`),
    retry: { retries: 5, initialRetryTime: 100 },
  })
}

function print(value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}

// kafkajs's errors carry the Kafka error type (e.g. UNKNOWN_TOPIC_OR_PARTITION) where the
// broker sent one; a retried error keeps the broker's error as its cause; the errors of
// several topics (createTopics), groups (deleteGroups) or partitions (deleteTopicRecords) are
// listed, the first one's type standing for the whole.
function describeError(error) {
  const cause = error.cause || error.originalError
  const parts = (error.errors || [])
    .concat((error.groups || []).map((group) => group.error))
    .concat((error.partitions || []).map((partition) => partition.error))
    .concat(cause ? [cause] : [])
    .filter(Boolean)
    .map(describeError)
  return {
    name: error.name,
    type: error.type || (parts.find((part) => part.type) || {}).type || null,
    message: error.message,
    retriable: error.retriable,
    errors: parts,
  }
}

async function main(run) {
  try {
    print(await run())
    process.exit(0)
  } catch (error) {
    print({ error: describeError(error) })
    process.exit(1)
  }
}

module.exports = { kafka, print, describeError, main }

// node produce.js BOOTSTRAP < SPEC_JSON
// Sends SPEC.batches (each a list of {key, value, partition, headers}) to SPEC.topic with one
// producer (idempotent if SPEC.idempotent; acks SPEC.acks, default -1), one send() per batch,
// or all in one sendBatch() if SPEC.send_batch; prints the RecordMetadata of every send.
// SPEC.pause_ms waits between sends; SPEC.retries (with retries of at most a second) lets sends
// outlast a leader's failover.
'use strict'
const { CompressionTypes, Partitioners } = require('kafkajs')
const { kafka, main } = require('./common')

const [bootstrap] = process.argv.slice(2)
const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'))

main(async () => {
  const producer = kafka(bootstrap).producer({
    retry: spec.retries ? { retries: spec.retries, maxRetryTime: 1000 } : undefined,
    idempotent: Boolean(spec.idempotent),
    maxInFlightRequests: spec.idempotent ? 1 : undefined,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  const acks = spec.acks === undefined ? -1 : spec.acks
  const compression = CompressionTypes[spec.compression || 'None']
  const results = []
  try {
    if (spec.send_batch) {
      const topicMessages = spec.batches.map((messages) => ({ topic: spec.topic, messages }))
      results.push(await producer.sendBatch({ topicMessages, acks, compression }))
    } else {
      for (const messages of spec.batches) {
        results.push(await producer.send({ topic: spec.topic, messages, acks, compression }))
        if (spec.pause_ms) await new Promise((resolve) => setTimeout(resolve, spec.pause_ms))
      }
    }
  } finally {
    await producer.disconnect()
  }
  return results
})

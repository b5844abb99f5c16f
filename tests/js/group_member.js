// node group_member.js BOOTSTRAP GROUP TOPIC [MEMBER_NAME]
// One member of a kafkajs consumer group, reading TOPIC from the beginning. Prints one JSON
// line per event: {"event": "assigned", "partitions": [...]} after each join,
// {"event": "message", partition, offset, key, value, headers} per message, and
// {"event": "committed", ...} after each offset commit. Closing its stdin (or SIGTERM) makes it
// leave the group cleanly (LeaveGroup) and print {"event": "stopped"}.
'use strict'
const { kafka, print, describeError } = require('./common')

const [bootstrap, groupId, topic, name] = process.argv.slice(2)

async function run() {
  const consumer = kafka(bootstrap, name || 'headrace-kafkajs-member').consumer({
    groupId,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 500,
  })
  const { GROUP_JOIN, COMMIT_OFFSETS, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, ({ payload }) => {
    const partitions = (payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
    print({ event: 'assigned', partitions, memberId: payload.memberId, leader: payload.isLeader })
  })
  consumer.on(COMMIT_OFFSETS, ({ payload }) => print({ event: 'committed', topics: payload.topics }))
  consumer.on(CRASH, ({ payload }) =>
    print({ event: 'crash', error: describeError(payload.error), restart: payload.restart }),
  )
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await consumer.disconnect()
    print({ event: 'stopped' })
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)

  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      print({
        event: 'message',
        partition,
        offset: Number(message.offset),
        key: message.key && message.key.toString(),
        value: message.value && message.value.toString(),
        headers: Object.fromEntries(
          Object.entries(message.headers || {}).map(([k, v]) => [k, v && v.toString()]),
        ),
      })
    },
  })
}

run().catch((error) => {
  print({ event: 'error', error: describeError(error) })
  process.exit(1)
})

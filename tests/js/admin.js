// node admin.js BOOTSTRAP CALL [ARGS_JSON]
// Calls kafkajs's admin method CALL with the arguments of the JSON array ARGS and prints what
// it returns (null for nothing), or {"error": ...} with kafkajs's error and exit status 1.
// describeGroups' members also get their metadata and assignment decoded by kafkajs's consumer
// protocol (as "subscription" and "assignment"). deleteTopicRecords finds leaders in the
// client's metadata cache only, so the topic's metadata is fetched first (as its users do).
'use strict'
const { AssignerProtocol } = require('kafkajs')
const { kafka, main } = require('./common')

function decodeMembers(result) {
  for (const group of result.groups) {
    for (const member of group.members) {
      if (group.protocolType !== 'consumer') continue
      member.subscription = AssignerProtocol.MemberMetadata.decode(member.memberMetadata)
      member.assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)
    }
  }
  return result
}

const [bootstrap, call, argsText] = process.argv.slice(2)
const args = argsText ? JSON.parse(argsText) : []

main(async () => {
  const admin = kafka(bootstrap).admin()
  await admin.connect()
  try {
    if (call === 'deleteTopicRecords') await admin.fetchTopicMetadata({ topics: [args[0].topic] })
    const result = await admin[call](...args)
    if (call === 'describeGroups') return decodeMembers(result)
    return result === undefined ? null : result
  } finally {
    await admin.disconnect()
  }
})

// node admin.js BOOTSTRAP CALL [ARGS_JSON]
// Calls kafkajs's admin method CALL with the arguments of the JSON array ARGS and prints what
// it returns (null for nothing), or {"error": ...} with kafkajs's error and exit status 1.
'use strict'
const { kafka, main } = require('./common')

const [bootstrap, call, argsText] = process.argv.slice(2)
const args = argsText ? JSON.parse(argsText) : []

main(async () => {
  const admin = kafka(bootstrap).admin()
  await admin.connect()
  try {
    const result = await admin[call](...args)
    return result === undefined ? null : result
  } finally {
    await admin.disconnect()
  }
})

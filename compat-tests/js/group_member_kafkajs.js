#!/usr/bin/env node
// One kafkajs member of a consumer group, for tests that mix client libraries in one group
// (compat-tests/group_behaviour.rs). Same contract as python/group_member.py: subscribes with the
// "roundrobin" protocol (kafkajs's RoundRobinAssigner under the name the other libraries use; its own name is
// "RoundRobinAssigner", which no other client offers), auto-commits every 200 ms and prints, flushed at once:
//   assigned <comma-separated partitions>   after each join
//   record <partition> <offset>             for each record read
// Runs until SIGTERM (then disconnects: commit and LeaveGroup) or --timeout seconds.
//
// Usage: node group_member_kafkajs.js --bootstrap HOST:PORT --topic T --group G
'use strict'

const { Kafka, logLevel, PartitionAssigners } = require('kafkajs')

function arg(name, dflt) {
  const i = process.argv.indexOf(name)
  return i < 0 ? dflt : process.argv[i + 1]
}

async function main() {
  const bootstrap = arg('--bootstrap')
  const topic = arg('--topic')
  const groupId = arg('--group')
  if (!bootstrap || !topic || !groupId) {
    process.stderr.write('usage: node group_member_kafkajs.js --bootstrap HOST:PORT --topic T --group G\n')
    process.exit(2)
  }
  const timeout = Number(arg('--timeout', '120')) * 1000
  const kafka = new Kafka({ clientId: 'kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN })
  const roundrobin = (ctx) => ({ ...PartitionAssigners.roundRobin(ctx), name: 'roundrobin' })
  const c = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    heartbeatInterval: 500,
    rebalanceTimeout: 10000,
    partitionAssigners: [roundrobin],
  })
  const say = (line) => process.stdout.write(line + '\n')
  c.on(c.events.GROUP_JOIN, (e) => {
    const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
    say('assigned ' + parts.join(','))
  })
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await c.disconnect()
    say('closed')
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  setTimeout(stop, timeout).unref()
  // Watchdog: a disconnect stuck on a broker that is gone must not outlive the test.
  setTimeout(() => process.exit(3), timeout + 30000).unref()
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  await c.run({
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      say(`record ${partition} ${message.offset}`)
    },
  })
}

main().catch((e) => {
  process.stderr.write(`group_member_kafkajs: ${e.stack || e}\n`)
  process.exit(1)
})

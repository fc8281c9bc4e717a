#!/usr/bin/env node
// Consumer group with kafkajs (whose Consumer always uses a group): subscribe, commit, resume.
//
// Produces 30 records to a 3-partition topic. Consumer A (group "js-group") runs eachMessage with autoCommit
// off, commits the next offset of each partition after reading 15 records and disconnects (LeaveGroup);
// consumer B in the same group reads the other records - none twice - and fetchOffsets shows A's commits.
//
// Usage: node group_kafkajs.js --bootstrap HOST:PORT. Exit 0 ok, 1 mismatch or client error, 3 timed out.
'use strict'

const { Kafka, Partitioners, logLevel } = require('kafkajs')

function fail(msg) {
  process.stderr.write(`group_kafkajs: FAIL: ${msg}\n`)
  process.exit(1)
}

async function main() {
  const i = process.argv.indexOf('--bootstrap')
  if (i < 0) {
    process.stderr.write('usage: node group_kafkajs.js --bootstrap HOST:PORT\n')
    process.exit(2)
  }
  setTimeout(() => {
    process.stderr.write('group_kafkajs: timed out\n')
    process.exit(3)
  }, 100000).unref()
  const kafka = new Kafka({ clientId: 'js-group-test', brokers: [process.argv[i + 1]], logLevel: logLevel.WARN })
  const topic = 'js-group-topic'
  const groupId = 'js-group'
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const messages = []
  for (let n = 0; n < 30; n++) messages.push({ partition: n % 3, value: `v${n}` })
  await producer.send({ topic, messages })
  await producer.disconnect()

  const seen = new Set()
  const next = {}
  const a = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 10000 })
  await a.connect()
  await a.subscribe({ topic, fromBeginning: true })
  let count = 0
  await new Promise((resolve) => {
    a.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (count >= 15) return
        count++
        const off = Number(message.offset)
        seen.add(`${partition}@${off}`)
        next[partition] = Math.max(next[partition] || 0, off + 1)
        if (count === 15) resolve()
      },
    })
  })
  await a.commitOffsets(Object.entries(next).map(([p, o]) => ({ topic, partition: Number(p), offset: String(o) })))
  await a.disconnect()

  const b = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 10000 })
  await b.connect()
  await b.subscribe({ topic, fromBeginning: true })
  await new Promise((resolve) => {
    b.run({
      eachMessage: async ({ partition, message }) => {
        const key = `${partition}@${message.offset}`
        if (seen.has(key)) fail(`record ${key} read again after the commit`)
        seen.add(key)
        if (seen.size === 30) resolve()
      },
    })
  })
  await b.disconnect()
  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
  for (const p of offsets[0].partitions) {
    if (next[p.partition] !== undefined && Number(p.offset) < next[p.partition]) {
      fail(`fetchOffsets ${JSON.stringify(p)} is behind A's commit ${next[p.partition]}`)
    }
  }
  await admin.disconnect()
  process.stdout.write('group_kafkajs: OK\n')
  process.exit(0)
}

main().catch((e) => fail(e.stack || String(e)))

#!/usr/bin/env node
// Round trip through a Kafka-compatible broker with kafkajs.
//
// Creates a 3-partition topic with the kafkajs admin client, produces --records
// keyed records with headers and explicit timestamps for each compression codec
// kafkajs ships (none and gzip; snappy/lz4/zstd need third-party codec
// plugins), then reads the whole topic back and checks every record.
//
// kafkajs has no consumer that works without a consumer group (its Consumer
// always joins one via FindCoordinator/JoinGroup, which the broker does not
// implement yet). So the read-back uses kafkajs's own connection, Fetch
// request encoder and record-batch decoder directly: it builds a kafkajs
// Cluster from the Kafka client (an internal of kafkajs 2.2.4, which is why the
// version is pinned), finds each partition's leader and issues Fetch requests
// from offset 0 until every partition is read.
//
// Usage: node roundtrip_kafkajs.js --bootstrap HOST:PORT [--records N]
//        [--codecs none,gzip] [--timeout SECONDS] [--topic NAME] [-v]
// Exit codes: 0 ok, 1 mismatch or client error, 2 bad usage, 3 timed out.
'use strict'

const crypto = require('crypto')
const { Kafka, Partitioners, CompressionTypes, logLevel } = require('kafkajs')

const CLIENT = 'kafkajs'
const NUM_PARTITIONS = 3
const BASE_TIMESTAMP_MS = 1704067200000
const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }
const SEND_CHUNK = 250

function usage(msg) {
  process.stderr.write(
    `${msg}\nusage: node roundtrip_kafkajs.js --bootstrap HOST:PORT [--records N] ` +
      `[--codecs none,gzip] [--timeout SECONDS] [--topic NAME] [-v]\n`
  )
  process.exit(2)
}

function parseArgs(argv) {
  const args = { records: 1000, codecs: ['none', 'gzip'], timeout: 120, topic: null, verbose: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) usage(`missing value for ${a}`)
      return argv[++i]
    }
    if (a === '--bootstrap') args.bootstrap = val()
    else if (a === '--records') args.records = parseInt(val(), 10)
    else if (a === '--codecs') args.codecs = val().split(',').map(s => s.trim()).filter(Boolean)
    else if (a === '--timeout') args.timeout = parseFloat(val())
    else if (a === '--topic') args.topic = val()
    else if (a === '-v' || a === '--verbose') args.verbose = true
    else if (a === '-h' || a === '--help') usage('kafkajs round trip against a Kafka-compatible broker')
    else usage(`unknown argument ${a}`)
  }
  if (!args.bootstrap) usage('--bootstrap is required')
  if (!(args.records >= NUM_PARTITIONS)) usage(`--records must be at least ${NUM_PARTITIONS}`)
  if (!(args.timeout > 0)) usage('--timeout must be positive')
  if (!args.topic) args.topic = `compat-kafkajs-${crypto.randomBytes(6).toString('hex')}`
  return args
}

class CheckFailed extends Error {}

function fail(message) {
  process.stderr.write(`${CLIENT}: FAILED: ${message}\n`)
  process.exit(1)
}

// Small deterministic PRNG (mulberry32) so every run sends the same data.
function rng(seedText) {
  let seed = crypto.createHash('sha256').update(seedText).digest().readUInt32LE(0)
  const next = () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1))
  const bytes = n => {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = int(0, 255)
    return b
  }
  return { int, bytes }
}

// Deterministic, varied records: unique keys, compressible text, random bytes,
// empty values, a few nulls (tombstones), 0-5 headers including a repeated key
// (kafkajs takes headers as an object; a repeated key is an array of values).
function makeRecords(codec, n) {
  const r = rng(`vltava-compat-${codec}`)
  const out = []
  for (let i = 0; i < n; i++) {
    const key = Buffer.from(`${codec}-${String(i).padStart(6, '0')}`)
    let value
    const kind = i % 10
    if (i % 97 === 13) value = null
    else if (i % 89 === 7) value = Buffer.alloc(0)
    else if (kind < 5) value = Buffer.from(`record ${i} of codec ${codec}; `.repeat(r.int(1, 40)))
    else if (kind < 8) value = r.bytes(r.int(1, 600))
    else if (kind === 8) value = Buffer.from(`žluťoučký kůň úpěl ďábelské ódy ${i} `.repeat(r.int(1, 8)), 'utf8')
    else value = Buffer.concat(Array(r.int(1, 30)).fill(r.bytes(r.int(1, 64))))
    const headers = {}
    const h = i % 4
    if (h >= 1) headers.seq = Buffer.from(String(i))
    if (h >= 2) {
      headers.codec = Buffer.from(codec)
      headers.bin = r.bytes(r.int(0, 32))
    }
    if (h >= 3) {
      headers.seq = [headers.seq, Buffer.from(`dup-${i}`)]
      headers.empty = Buffer.alloc(0)
    }
    const timestamp = BASE_TIMESTAMP_MS + i * 1000 + r.int(0, 999)
    out.push({ codec, index: i, key, value, headers, timestamp, partition: -1, offset: -1 })
  }
  return out
}

const short = b => {
  if (b === null || b === undefined) return String(b)
  const s = JSON.stringify(b.toString('latin1'))
  return s.length <= 80 ? s : s.slice(0, 77) + '...'
}

const bufEq = (a, b) => {
  if (a === null || a === undefined || b === null || b === undefined) {
    return (a === null || a === undefined) && (b === null || b === undefined)
  }
  return Buffer.compare(a, b) === 0
}

function headersEqual(sent, got) {
  const sk = Object.keys(sent)
  const gk = Object.keys(got || {})
  if (sk.length !== gk.length || sk.some((k, i) => k !== gk[i])) return false
  for (const k of sk) {
    const sv = sent[k]
    const gv = got[k]
    if (Array.isArray(sv) !== Array.isArray(gv)) return false
    if (Array.isArray(sv)) {
      if (sv.length !== gv.length || sv.some((v, i) => !bufEq(v, gv[i]))) return false
    } else if (!bufEq(sv, gv)) return false
  }
  return true
}

const fmtHeaders = h =>
  JSON.stringify(
    Object.fromEntries(
      Object.entries(h || {}).map(([k, v]) => [k, Array.isArray(v) ? v.map(short) : short(v)])
    )
  )

function verify(sent, got) {
  const errors = []
  const sentBy = {}
  const gotBy = {}
  for (let p = 0; p < NUM_PARTITIONS; p++) {
    sentBy[p] = []
    gotBy[p] = []
  }
  for (const r of sent) sentBy[r.partition].push(r)
  for (const g of got) {
    if (!(g.partition in gotBy)) throw new CheckFailed(`consumed a record from unexpected partition ${g.partition}`)
    gotBy[g.partition].push(g)
  }
  const used = Object.keys(sentBy).filter(p => sentBy[p].length > 0)
  if (used.length < NUM_PARTITIONS) {
    throw new CheckFailed(`records were produced to partitions ${used} only, expected all ${NUM_PARTITIONS}`)
  }
  outer: for (let p = 0; p < NUM_PARTITIONS; p++) {
    const s = sentBy[p].sort((a, b) => a.offset - b.offset)
    const g = gotBy[p]
    if (s.length !== g.length) errors.push(`partition ${p}: produced ${s.length} records, consumed ${g.length}`)
    let last = -1
    for (let j = 0; j < Math.min(s.length, g.length); j++) {
      const rs = s[j]
      const rg = g[j]
      const where = `partition ${p} position ${j} (offset ${rg.offset}, sent key ${short(rs.key)})`
      if (rg.offset <= last) errors.push(`${where}: offset not increasing (previous ${last})`)
      last = rg.offset
      if (rs.offset !== rg.offset) errors.push(`${where}: produce response implies offset ${rs.offset}, consumed at ${rg.offset}`)
      if (!bufEq(rs.key, rg.key)) errors.push(`${where}: key mismatch: got ${short(rg.key)}`)
      if (!bufEq(rs.value, rg.value)) {
        errors.push(
          `${where}: value mismatch: sent ${short(rs.value)} (len ${rs.value ? rs.value.length : 'null'}), ` +
            `got ${short(rg.value)} (len ${rg.value ? rg.value.length : 'null'})`
        )
      }
      if (!headersEqual(rs.headers, rg.headers)) {
        errors.push(`${where}: headers mismatch: sent ${fmtHeaders(rs.headers)}, got ${fmtHeaders(rg.headers)}`)
      }
      if (String(rs.timestamp) !== String(rg.timestamp)) {
        errors.push(`${where}: timestamp mismatch: sent ${rs.timestamp}, got ${rg.timestamp}`)
      }
      if (rg.timestampType !== 0) errors.push(`${where}: timestamp type ${rg.timestampType}, expected CreateTime (0)`)
      if (errors.length > 20) break outer
    }
  }
  if (errors.length) {
    const more = errors.length > 20 ? ' (further errors not shown)' : ''
    throw new CheckFailed(`${errors.length} mismatch(es)${more}:\n  ` + errors.slice(0, 20).join('\n  '))
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const deadline = Date.now() + args.timeout * 1000
  setTimeout(() => {
    process.stderr.write(`${CLIENT}: FAILED: timed out after ${args.timeout} s\n`)
    process.exit(3)
  }, args.timeout * 1000).unref()
  const log = msg => {
    if (args.verbose) console.log(`[${CLIENT} ${new Date().toISOString().slice(11, 19)}] ${msg}`)
  }
  for (const c of args.codecs) {
    if (!(c in CODECS)) {
      fail(`codec ${c} is not supported by kafkajs without a third-party codec plugin; use none,gzip`)
    }
  }

  const kafka = new Kafka({
    clientId: 'vltava-compat-kafkajs',
    brokers: [args.bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2000 },
    logLevel: args.verbose ? logLevel.INFO : logLevel.ERROR,
  })

  // --- create the topic ------------------------------------------------------
  const admin = kafka.admin()
  await admin.connect()
  let created
  try {
    created = await admin.createTopics({
      topics: [{ topic: args.topic, numPartitions: NUM_PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30000,
    })
  } catch (e) {
    fail(`CreateTopics(${args.topic}) failed: ${e.stack || e}`)
  }
  if (created !== true) fail(`CreateTopics(${args.topic}) returned ${created} (topic already existed?)`)
  const md = await admin.fetchTopicMetadata({ topics: [args.topic] })
  const tmd = md.topics.find(t => t.name === args.topic)
  if (!tmd || tmd.partitions.length !== NUM_PARTITIONS) {
    fail(`Metadata for ${args.topic} after CreateTopics: ${JSON.stringify(tmd)}`)
  }
  log(`created topic ${args.topic}`)

  // --- produce ---------------------------------------------------------------
  // The expected partition of each keyed record is computed with the same
  // (Java-compatible murmur2) partitioner the producer uses; the offset of each
  // record follows from the base offset the produce response reports for the
  // batch of each partition.
  const partitionMetadata = [...tmd.partitions].sort((a, b) => a.partitionId - b.partitionId)
  const partitioner = Partitioners.DefaultPartitioner()
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true, // InitProducerId and sequence checks (kafkajs's default is off)
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  const sent = []
  for (const codec of args.codecs) {
    const recs = makeRecords(codec, args.records)
    for (let start = 0; start < recs.length; start += SEND_CHUNK) {
      const chunk = recs.slice(start, start + SEND_CHUNK)
      const messages = chunk.map(r => ({
        key: r.key,
        value: r.value,
        headers: r.headers,
        timestamp: String(r.timestamp),
      }))
      for (const [i, m] of messages.entries()) {
        chunk[i].partition = partitioner({ topic: args.topic, partitionMetadata, message: m })
      }
      let res
      try {
        res = await producer.send({ topic: args.topic, acks: -1, timeout: 30000, compression: CODECS[codec], messages })
      } catch (e) {
        fail(`codec ${codec}: produce failed: ${e.stack || e}`)
      }
      const base = {}
      for (const r of res) {
        if (r.errorCode !== 0) fail(`codec ${codec}: produce to partition ${r.partition} returned error ${r.errorCode}`)
        base[r.partition] = Number(r.baseOffset)
      }
      const seen = {}
      for (const r of chunk) {
        if (!(r.partition in base)) fail(`codec ${codec}: no produce response for partition ${r.partition}`)
        seen[r.partition] = (seen[r.partition] || 0) + 1
        r.offset = base[r.partition] + seen[r.partition] - 1
      }
    }
    sent.push(...recs)
    log(`produced ${recs.length} records with compression ${codec}`)
  }
  await producer.disconnect()

  const want = {}
  for (let p = 0; p < NUM_PARTITIONS; p++) want[p] = 0
  for (const r of sent) want[r.partition]++

  // --- read back with kafkajs's Fetch (no consumer group) --------------------
  const createCluster = Object.getOwnPropertySymbols(kafka).find(
    s => s.description === 'private:Kafka:createCluster'
  )
  if (!createCluster) fail('kafkajs internals changed: no private:Kafka:createCluster (kafkajs must be 2.2.4)')
  const cluster = kafka[createCluster]({ allowAutoTopicCreation: false })
  await cluster.connect()
  await cluster.addTargetTopic(args.topic)
  const leaders = cluster.findLeaderForPartitions(args.topic, [...Array(NUM_PARTITIONS).keys()])
  const got = []
  const next = {}
  const counts = {}
  for (let p = 0; p < NUM_PARTITIONS; p++) {
    next[p] = 0
    counts[p] = 0
  }
  const highWatermark = {}
  for (;;) {
    const pending = Object.keys(next).map(Number).filter(p => highWatermark[p] === undefined || next[p] < highWatermark[p])
    if (pending.length === 0) break
    if (Date.now() > deadline - 2000) fail(`fetch timed out: have ${JSON.stringify(counts)}, want ${JSON.stringify(want)}`)
    for (const [leaderId, partitions] of Object.entries(leaders)) {
      const mine = partitions.filter(p => pending.includes(p))
      if (mine.length === 0) continue
      const broker = await cluster.findBroker({ nodeId: leaderId })
      let resp
      try {
        resp = await broker.fetch({
          replicaId: -1,
          maxWaitTime: 100,
          minBytes: 1,
          maxBytes: 4 * 1024 * 1024,
          topics: [
            {
              topic: args.topic,
              partitions: mine.map(p => ({ partition: p, fetchOffset: String(next[p]), maxBytes: 1024 * 1024 })),
            },
          ],
        })
      } catch (e) {
        fail(`Fetch failed: ${e.stack || e}`)
      }
      for (const t of resp.responses) {
        if (t.topicName !== args.topic) fail(`Fetch returned unexpected topic ${t.topicName}`)
        for (const part of t.partitions) {
          const p = part.partition
          if (part.errorCode !== 0) fail(`Fetch of partition ${p} at ${next[p]} returned error ${part.errorCode}`)
          highWatermark[p] = Number(part.highWatermark)
          for (const m of part.messages) {
            const off = Number(m.offset)
            if (off < next[p]) continue // whole batches are returned; skip what was already read
            if (m.isControlRecord) fail(`unexpected control record at ${p}@${off}`)
            got.push({
              partition: p,
              offset: off,
              key: m.key,
              value: m.value,
              headers: m.headers,
              timestamp: m.timestamp,
              timestampType: m.batchContext ? m.batchContext.timestampType : undefined,
            })
            counts[p]++
            next[p] = off + 1
          }
        }
      }
    }
  }
  await cluster.disconnect()
  log(`fetched ${got.length} records: ${JSON.stringify(counts)}`)

  // --- ListOffsets via the admin client --------------------------------------
  const offsets = await admin.fetchTopicOffsets(args.topic)
  await admin.disconnect()
  const wmErrors = []
  for (let p = 0; p < NUM_PARTITIONS; p++) {
    const o = offsets.find(x => x.partition === p)
    const offs = sent.filter(r => r.partition === p).map(r => r.offset)
    const wantHigh = offs.length ? Math.max(...offs) + 1 : 0
    if (!o) wmErrors.push(`partition ${p} missing`)
    else {
      if (Number(o.low) !== 0) wmErrors.push(`partition ${p}: earliest offset ${o.low}, expected 0`)
      if (Number(o.high) !== wantHigh) wmErrors.push(`partition ${p}: latest offset ${o.high}, expected ${wantHigh}`)
    }
  }
  try {
    if (wmErrors.length) throw new CheckFailed('ListOffsets: ' + wmErrors.join('; '))
    verify(sent, got)
  } catch (e) {
    if (e instanceof CheckFailed) fail(e.message)
    throw e
  }
  console.log(
    `${CLIENT}: ${got.length} records ok (${args.codecs.length} codecs: ${args.codecs.join(', ')}; ` +
      `snappy, lz4, zstd need codec plugins kafkajs does not ship; partitions ${JSON.stringify(counts)})`
  )
  process.exit(0)
}

main().catch(e => fail(`unexpected error: ${e.stack || e}`))

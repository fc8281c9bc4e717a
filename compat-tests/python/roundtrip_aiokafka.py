#!/usr/bin/env python3
"""Round trip through a Kafka-compatible broker with aiokafka (asyncio client).

Creates a 3-partition topic with AIOKafkaAdminClient, produces --records keyed
records with headers and explicit timestamps for each compression codec
(aiokafka compresses snappy/lz4/zstd with cramjam), consumes the whole topic
back with AIOKafkaConsumer(group_id=None) + assign() + seek_to_beginning() and
checks every record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import NUM_PARTITIONS, CheckFailed, Got  # noqa: E402

CLIENT = "aiokafka"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


async def run(args) -> int:
    deadline = time.monotonic() + args.timeout

    def remaining() -> float:
        return max(0.5, deadline - time.monotonic() - 1.0)

    import aiokafka
    import aiokafka.codec as codecs
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    common.log(args, CLIENT, f"aiokafka {aiokafka.__version__}")
    available = {
        "none": lambda: True,
        "gzip": codecs.has_gzip,
        "snappy": codecs.has_snappy,
        "lz4": codecs.has_lz4,
        "zstd": codecs.has_zstd,
    }
    codec_list, skipped = [], []
    for c in args.codecs:
        if c not in available:
            common.fail(CLIENT, f"unknown codec {c}")
        if available[c]():
            codec_list.append(c)
        else:
            skipped.append(c)
            print(f"{CLIENT}: SKIPPING codec {c}: its compression library is not installed", flush=True)
    if not codec_list:
        common.fail(CLIENT, "no usable codec")

    # --- create the topic -------------------------------------------------
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=30000)
    await asyncio.wait_for(admin.start(), remaining())
    try:
        resp = await asyncio.wait_for(
            admin.create_topics([NewTopic(args.topic, num_partitions=NUM_PARTITIONS, replication_factor=1)],
                                timeout_ms=30000),
            remaining(),
        )
    except Exception as e:  # noqa: BLE001
        common.fail(CLIENT, f"CreateTopics({args.topic}) failed: {e!r}")
    for t in resp.topic_errors:
        if t[1] != 0:
            common.fail(CLIENT, f"CreateTopics({args.topic}) returned error code {t[1]}: {t[2:] if len(t) > 2 else ''}")
    topics = await asyncio.wait_for(admin.describe_topics([args.topic]), remaining())
    if len(topics) != 1 or topics[0].get("error_code") != 0 or len(topics[0].get("partitions", [])) != NUM_PARTITIONS:
        common.fail(CLIENT, f"Metadata for {args.topic} after CreateTopics: {topics!r}")
    await admin.close()
    common.log(args, CLIENT, f"created topic {args.topic}")

    # --- produce, one producer per codec ------------------------------------
    sent: list[common.Rec] = []
    for codec in codec_list:
        recs = common.make_records(codec, args.records)
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap,
            compression_type=None if codec == "none" else codec,
            enable_idempotence=True,  # InitProducerId and sequence checks (aiokafka's default is off)
            acks="all",
            linger_ms=5,
            request_timeout_ms=30000,
        )
        await asyncio.wait_for(producer.start(), remaining())
        try:
            futures = []
            for rec in recs:
                fut = await asyncio.wait_for(
                    producer.send(args.topic, key=rec.key, value=rec.value,
                                  headers=rec.headers, timestamp_ms=rec.timestamp_ms),
                    remaining(),
                )
                futures.append(fut)
            results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), remaining())
        finally:
            await producer.stop()
        for rec, md in zip(recs, results):
            if isinstance(md, BaseException):
                common.fail(CLIENT, f"codec {codec}: produce of {rec.key!r} failed: {md!r}")
            rec.partition = md.partition
            rec.offset = md.offset
        sent.extend(recs)
        common.log(args, CLIENT, f"produced {len(recs)} records with compression {codec}")

    # --- consume everything back without a consumer group -------------------
    want = common.expected_counts(sent)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
    )
    await asyncio.wait_for(consumer.start(), remaining())
    got: list[Got] = []
    counts = {p: 0 for p in range(NUM_PARTITIONS)}
    try:
        tps = [TopicPartition(args.topic, p) for p in range(NUM_PARTITIONS)]
        consumer.assign(tps)
        await asyncio.wait_for(consumer.seek_to_beginning(*tps), remaining())

        def take(batch):
            for _tp, msgs in batch.items():
                for m in msgs:
                    if m.timestamp_type != 0:
                        common.fail(CLIENT, f"record at {m.partition}@{m.offset} has timestamp type "
                                            f"{m.timestamp_type}, expected CreateTime (0)")
                    got.append(Got(m.partition, m.offset, m.key, m.value, list(m.headers or []), m.timestamp))
                    counts[m.partition] += 1

        while any(counts[p] < want[p] for p in range(NUM_PARTITIONS)):
            if time.monotonic() > deadline - 2:
                common.fail(CLIENT, f"consume timed out: have {counts}, want {want}")
            take(await consumer.getmany(timeout_ms=500, max_records=2000))
        take(await consumer.getmany(timeout_ms=300))  # anything beyond what was produced?
        common.log(args, CLIENT, f"consumed {len(got)} records: {counts}")
        low = {tp.partition: o for tp, o in (await asyncio.wait_for(consumer.beginning_offsets(tps), remaining())).items()}
        high = {tp.partition: o for tp, o in (await asyncio.wait_for(consumer.end_offsets(tps), remaining())).items()}
    finally:
        await consumer.stop()

    try:
        common.check_watermarks(sent, low, high)
        common.verify(CLIENT, sent, got)
    except CheckFailed as e:
        common.fail(CLIENT, str(e))

    skip_note = f"; skipped {', '.join(skipped)}" if skipped else ""
    print(f"{CLIENT}: {len(got)} records ok ({len(codec_list)} codecs: {', '.join(codec_list)}{skip_note}; partitions {counts})", flush=True)
    return 0


def main() -> int:
    args = common.parse_args(CLIENT, CODECS)
    common.start_watchdog(CLIENT, args.timeout)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(run(args))
    except asyncio.TimeoutError:
        common.fail(CLIENT, "an operation timed out")
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        common.fail(CLIENT, f"unexpected error: {e!r}")


if __name__ == "__main__":
    sys.exit(main())

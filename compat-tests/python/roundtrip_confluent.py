#!/usr/bin/env python3
"""Round trip through a Kafka-compatible broker with confluent-kafka (librdkafka).

Creates a 3-partition topic with AdminClient, produces --records keyed records
with headers and explicit timestamps for each compression codec, consumes the
whole topic back by manual assignment (assign(), no subscribe, no commits: the
broker has no consumer-group support yet) and checks every record.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import NUM_PARTITIONS, CheckFailed, Got  # noqa: E402

CLIENT = "confluent-kafka"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def main() -> int:
    args = common.parse_args(CLIENT, CODECS)
    common.start_watchdog(CLIENT, args.timeout)
    deadline = time.monotonic() + args.timeout

    def remaining() -> float:
        return max(0.5, deadline - time.monotonic() - 1.0)

    import confluent_kafka
    from confluent_kafka import (
        OFFSET_BEGINNING,
        TIMESTAMP_CREATE_TIME,
        Consumer,
        KafkaError,
        Producer,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient, NewTopic

    common.log(args, CLIENT, f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}")
    base = {"bootstrap.servers": args.bootstrap, "broker.address.family": "v4"}

    # --- create the topic -------------------------------------------------
    admin = AdminClient(dict(base))
    futs = admin.create_topics(
        [NewTopic(args.topic, num_partitions=NUM_PARTITIONS, replication_factor=1)],
        operation_timeout=30,
        request_timeout=30,
    )
    try:
        futs[args.topic].result(timeout=remaining())
    except Exception as e:  # noqa: BLE001
        common.fail(CLIENT, f"CreateTopics({args.topic}) failed: {e!r}")
    md = admin.list_topics(topic=args.topic, timeout=remaining())
    tmd = md.topics.get(args.topic)
    if tmd is None or tmd.error is not None or len(tmd.partitions) != NUM_PARTITIONS:
        common.fail(CLIENT, f"Metadata for {args.topic} after CreateTopics: {tmd and tmd.error}, "
                            f"partitions {sorted(tmd.partitions) if tmd else None}")
    common.log(args, CLIENT, f"created topic {args.topic}")

    # --- produce, one producer per codec ------------------------------------
    sent: list[common.Rec] = []
    for codec in args.codecs:
        recs = common.make_records(codec, args.records)
        errors: list[str] = []

        def on_delivery(err, msg, rec):
            if err is not None:
                errors.append(f"{rec.key!r}: {err}")
            else:
                rec.partition = msg.partition()
                rec.offset = msg.offset()

        producer = Producer({
            **base,
            "compression.type": codec,
            # librdkafka's defaults otherwise (acks=all; enable.idempotence is off by default)
            "linger.ms": 5,
            "message.timeout.ms": 60000,
        })
        for rec in recs:
            while True:
                try:
                    producer.produce(
                        args.topic,
                        key=rec.key,
                        value=rec.value,
                        headers=rec.headers,
                        timestamp=rec.timestamp_ms,
                        on_delivery=lambda err, msg, rec=rec: on_delivery(err, msg, rec),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        left = producer.flush(remaining())
        if left:
            common.fail(CLIENT, f"codec {codec}: {left} records still undelivered after flush")
        if errors:
            common.fail(CLIENT, f"codec {codec}: {len(errors)} delivery errors, first: {errors[0]}")
        sent.extend(recs)
        common.log(args, CLIENT, f"produced {len(recs)} records with compression {codec}")

    # --- consume everything back without a consumer group -------------------
    want = common.expected_counts(sent)
    consumer = Consumer({
        **base,
        # librdkafka refuses to create a consumer without group.id, but
        # assign() with explicit offsets never joins the group or commits.
        "group.id": f"vltava-compat-unused-{args.topic}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    })
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in range(NUM_PARTITIONS)])
    got: list[Got] = []
    counts = {p: 0 for p in range(NUM_PARTITIONS)}
    at_end: set[int] = set()
    while len(at_end) < NUM_PARTITIONS:
        if time.monotonic() > deadline:
            common.fail(CLIENT, f"consume timed out: have {counts}, want {want}")
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    p = msg.partition()
                    if counts[p] >= want[p]:
                        at_end.add(p)
                    continue
                common.fail(CLIENT, f"consume error on {msg.topic()} [{msg.partition()}]: {err}")
            ts_type, ts = msg.timestamp()
            if ts_type != TIMESTAMP_CREATE_TIME:
                common.fail(CLIENT, f"record at {msg.partition()}@{msg.offset()} has timestamp type {ts_type}, expected CreateTime")
            got.append(Got(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers() or [], ts))
            counts[msg.partition()] += 1
    common.log(args, CLIENT, f"consumed {len(got)} records: {counts}")

    low, high = {}, {}
    for p in range(NUM_PARTITIONS):
        low[p], high[p] = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=remaining())
    consumer.close()

    try:
        common.check_watermarks(sent, low, high)
        common.verify(CLIENT, sent, got)
    except CheckFailed as e:
        common.fail(CLIENT, str(e))

    print(f"{CLIENT}: {len(got)} records ok ({len(args.codecs)} codecs: {', '.join(args.codecs)}; partitions {counts})", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        common.fail(CLIENT, f"unexpected error: {e!r}")

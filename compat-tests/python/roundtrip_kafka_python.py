#!/usr/bin/env python3
"""Round trip through a Kafka-compatible broker with kafka-python (pure Python client).

Creates a 3-partition topic with KafkaAdminClient, produces --records keyed
records with headers and explicit timestamps for each compression codec
(snappy needs python-snappy, lz4 needs lz4, zstd needs zstandard), consumes the
whole topic back with KafkaConsumer(group_id=None) + assign() +
seek_to_beginning() and checks every record.
"""

from __future__ import annotations

import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import NUM_PARTITIONS, CheckFailed, Got  # noqa: E402

CLIENT = "kafka-python"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def main() -> int:
    args = common.parse_args(CLIENT, CODECS)
    common.start_watchdog(CLIENT, args.timeout)
    deadline = time.monotonic() + args.timeout
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def remaining_ms() -> int:
        return int(max(500, (deadline - time.monotonic() - 1.0) * 1000))

    import kafka
    import kafka.codec as codecs
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient

    common.log(args, CLIENT, f"kafka-python {kafka.__version__}")
    available = {
        "none": lambda: True,
        "gzip": codecs.has_gzip,
        "snappy": codecs.has_snappy,
        "lz4": codecs.has_lz4,
        "zstd": codecs.has_zstd,
    }
    codec_list = []
    skipped = []
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
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id="vltava-compat-admin",
                             request_timeout_ms=30000)
    try:
        res = admin.create_topics(
            {args.topic: {"num_partitions": NUM_PARTITIONS, "replication_factor": 1}},
            timeout_ms=30000,
            wait_for_metadata=True,
        )
    except Exception as e:  # noqa: BLE001
        common.fail(CLIENT, f"CreateTopics({args.topic}) failed: {e!r}")
    topics = admin.describe_topics([args.topic])
    if len(topics) != 1 or topics[0].get("error_code") != 0 or len(topics[0].get("partitions", [])) != NUM_PARTITIONS:
        common.fail(CLIENT, f"Metadata for {args.topic} after CreateTopics: {topics!r} (create response {res!r})")
    admin.close()
    common.log(args, CLIENT, f"created topic {args.topic}")

    # --- produce, one producer per codec ------------------------------------
    sent: list[common.Rec] = []
    for codec in codec_list:
        recs = common.make_records(codec, args.records)
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap,
            compression_type=None if codec == "none" else codec,
            # kafka-python's defaults: idempotent (InitProducerId) since the broker supports it
            linger_ms=5,
            request_timeout_ms=30000,
            max_block_ms=30000,
        )
        futures = []
        for rec in recs:
            futures.append((rec, producer.send(args.topic, key=rec.key, value=rec.value,
                                               headers=rec.headers, timestamp_ms=rec.timestamp_ms)))
        producer.flush(timeout=remaining_ms() / 1000)
        for rec, fut in futures:
            try:
                md = fut.get(timeout=max(0.5, remaining_ms() / 1000))
            except Exception as e:  # noqa: BLE001
                common.fail(CLIENT, f"codec {codec}: produce of {rec.key!r} failed: {e!r}")
            rec.partition = md.partition
            rec.offset = md.offset
        # The default producer is idempotent against this broker: it got a producer id (InitProducerId).
        tm = getattr(producer, "_transaction_manager", None)
        if tm is None or not tm.has_producer_id():
            common.fail(CLIENT, f"codec {codec}: the default producer is not idempotent (no producer id)")
        producer.close(timeout=10)
        sent.extend(recs)
        common.log(args, CLIENT, f"produced {len(recs)} records with compression {codec}")

    # --- consume everything back without a consumer group -------------------
    want = common.expected_counts(sent)
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
    )
    tps = [TopicPartition(args.topic, p) for p in range(NUM_PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got: list[Got] = []
    counts = {p: 0 for p in range(NUM_PARTITIONS)}
    while any(counts[p] < want[p] for p in range(NUM_PARTITIONS)):
        if time.monotonic() > deadline - 2:
            common.fail(CLIENT, f"consume timed out: have {counts}, want {want}")
        batch = consumer.poll(timeout_ms=500, max_records=2000)
        for tp, msgs in batch.items():
            for m in msgs:
                if m.timestamp_type != 0:
                    common.fail(CLIENT, f"record at {m.partition}@{m.offset} has timestamp type {m.timestamp_type}, expected CreateTime (0)")
                got.append(Got(m.partition, m.offset, m.key, m.value, list(m.headers or []), m.timestamp))
                counts[m.partition] += 1
    # anything beyond what was produced?
    extra = consumer.poll(timeout_ms=300)
    for tp, msgs in extra.items():
        for m in msgs:
            got.append(Got(m.partition, m.offset, m.key, m.value, list(m.headers or []), m.timestamp))
            counts[m.partition] += 1
    common.log(args, CLIENT, f"consumed {len(got)} records: {counts}")

    low = {tp.partition: o for tp, o in consumer.beginning_offsets(tps, timeout_ms=remaining_ms()).items()}
    high = {tp.partition: o for tp, o in consumer.end_offsets(tps, timeout_ms=remaining_ms()).items()}
    consumer.close(autocommit=False)

    try:
        common.check_watermarks(sent, low, high)
        common.verify(CLIENT, sent, got)
    except CheckFailed as e:
        common.fail(CLIENT, str(e))

    skip_note = f"; skipped {', '.join(skipped)}" if skipped else ""
    print(f"{CLIENT}: {len(got)} records ok ({len(codec_list)} codecs: {', '.join(codec_list)}{skip_note}; partitions {counts})", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        common.fail(CLIENT, f"unexpected error: {e!r}")

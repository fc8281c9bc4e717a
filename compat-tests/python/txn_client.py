#!/usr/bin/env python3
"""Transactions with confluent-kafka (librdkafka) and kafka-python, driven by compat-tests/transactions.rs.

Subcommands (all take --bootstrap HOST:PORT and --timeout S; the topics exist already):

  read-committed --client confluent|kafka-python --topic T (2 partitions)
      The client's own transactional producer interleaves committed and aborted transactions with the
      records of a non-transactional producer, then leaves a transaction open and writes a non-transactional
      record after it. One read_committed consumer (assign, from the beginning) must get exactly the committed
      and non-transactional records up to the open transaction - nothing after it, though committed, since
      the last stable offset holds it back - and, once the transaction commits, the rest; a read_uncommitted
      consumer gets everything, aborted records included. Per partition the offsets are those the producers
      were told, in order.

  hang --topic T --txn-id ID --timeout-ms MS --records N
      confluent-kafka transactional producer (transaction.timeout.ms=MS): begins a transaction, writes N
      records to partition 0, flushes, prints "produced" and sleeps until killed (the test kill -9s it).

  transform --txn-id ID --group G --input I --output O [--stall-after K]
      Consume-transform-produce with confluent-kafka: a read_committed consumer of group G (assign, no
      subscription) reads I from the group's committed offsets; each poll's records go to O as "out-<value>"
      (same partition) inside one transaction with the consumer's positions (send_offsets_to_transaction).
      Prints "committed <n> <records>" after each commit. With --stall-after K the K+1-th transaction stops
      after send_offsets_to_transaction, before its commit: prints "stalled" and sleeps until killed. Ends
      when the positions reach I's end offsets: prints "done <records>".

Exit 0 on success, 1 on a mismatch or client error (message on stderr), 2 on bad usage, 3 on the time bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def fail(msg: str) -> None:
    print(f"txn_client: FAILED: {msg}", file=sys.stderr, flush=True)
    os._exit(1)


def say(msg: str) -> None:
    print(msg, flush=True)


def watchdog(seconds: float) -> None:
    def run() -> None:
        time.sleep(seconds)
        print(f"txn_client: FAILED: time bound of {seconds} s hit", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=run, daemon=True).start()


# ---------------------------------------------------------------------------------------------------------
# The two clients behind one small interface: a transactional producer, a plain producer, an assigned consumer.


class ConfluentClient:
    def __init__(self, bootstrap: str) -> None:
        import confluent_kafka

        self.ck = confluent_kafka
        self.base = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}

    def txn_producer(self, txn_id: str):
        p = self.ck.Producer(dict(self.base, **{"transactional.id": txn_id, "linger.ms": 2}))
        p.init_transactions(30)
        return ConfluentProducer(p, transactional=True)

    def plain_producer(self):
        return ConfluentProducer(self.ck.Producer(dict(self.base, **{"linger.ms": 2})), transactional=False)

    def consumer(self, topic: str, partitions: int, isolation: str):
        c = self.ck.Consumer(
            dict(
                self.base,
                **{
                    "group.id": f"unused-{isolation}",
                    "enable.auto.commit": False,
                    "isolation.level": isolation,
                    "enable.partition.eof": False,
                },
            )
        )
        c.assign([self.ck.TopicPartition(topic, p, self.ck.OFFSET_BEGINNING) for p in range(partitions)])
        return ConfluentConsumer(c)


class ConfluentProducer:
    def __init__(self, p, transactional: bool) -> None:
        self.p = p
        self.transactional = transactional
        self.acks: dict[str, tuple[int, int]] = {}

    def send(self, topic: str, partition: int, value: str) -> None:
        def on_delivery(err, msg) -> None:
            if err is not None:
                fail(f"delivery of {value}: {err}")
            self.acks[value] = (msg.partition(), msg.offset())

        self.p.produce(topic, value=value.encode(), key=value.encode(), partition=partition, on_delivery=on_delivery)

    def flush(self) -> None:
        if self.p.flush(30) != 0:
            fail("flush did not finish in 30 s")

    def begin(self) -> None:
        self.p.begin_transaction()

    def commit(self) -> None:
        self.p.commit_transaction(30)
        self.p.poll(0)

    def abort(self) -> None:
        self.p.abort_transaction(30)
        self.p.poll(0)


class ConfluentConsumer:
    def __init__(self, c) -> None:
        self.c = c

    def poll(self) -> list[tuple[int, int, str]]:
        out = []
        for m in self.c.consume(num_messages=100, timeout=0.2):
            if m.error():
                fail(f"consume error: {m.error()}")
            out.append((m.partition(), m.offset(), m.value().decode()))
        return out


class KafkaPythonClient:
    def __init__(self, bootstrap: str) -> None:
        import kafka

        self.kafka = kafka
        self.bootstrap = bootstrap

    def txn_producer(self, txn_id: str):
        p = self.kafka.KafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=txn_id,
            linger_ms=2,
            request_timeout_ms=30000,
            max_block_ms=30000,
        )
        p.init_transactions()
        return KafkaPythonProducer(p)

    def plain_producer(self):
        return KafkaPythonProducer(
            self.kafka.KafkaProducer(
                bootstrap_servers=self.bootstrap, linger_ms=2, request_timeout_ms=30000, max_block_ms=30000
            )
        )

    def consumer(self, topic: str, partitions: int, isolation: str):
        c = self.kafka.KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
            fetch_max_wait_ms=100,
            request_timeout_ms=30000,
        )
        tps = [self.kafka.TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        return KafkaPythonConsumer(c)


class KafkaPythonProducer:
    def __init__(self, p) -> None:
        self.p = p
        self.futures: list = []
        self.acks: dict[str, tuple[int, int]] = {}

    def send(self, topic: str, partition: int, value: str) -> None:
        self.futures.append((value, self.p.send(topic, value=value.encode(), key=value.encode(), partition=partition)))

    def flush(self) -> None:
        self.p.flush(timeout=30)
        for value, f in self.futures:
            try:
                md = f.get(timeout=30)
            except Exception as e:  # noqa: BLE001
                fail(f"delivery of {value}: {e!r}")
            self.acks[value] = (md.partition, md.offset)
        self.futures.clear()

    def begin(self) -> None:
        self.p.begin_transaction()

    def commit(self) -> None:
        self.p.commit_transaction()

    def abort(self) -> None:
        self.p.abort_transaction()


class KafkaPythonConsumer:
    def __init__(self, c) -> None:
        self.c = c

    def poll(self) -> list[tuple[int, int, str]]:
        out = []
        for tp, msgs in self.c.poll(timeout_ms=200).items():
            for m in msgs:
                out.append((tp.partition, m.offset, m.value.decode()))
        return out


# ---------------------------------------------------------------------------------------------------------


def read_exactly(consumer, want: dict[str, tuple[int, int]], got: list, deadline: float, label: str) -> None:
    """Polls until every record of `want` (value -> (partition, offset)) arrived, then 1.5 s more; `got` must
    then hold exactly `want`'s records, in offset order per partition."""
    seen = {v for _, _, v in got}
    while not set(want) <= seen:
        if time.monotonic() > deadline:
            fail(f"{label}: missing {sorted(set(want) - seen)[:10]} (got {len(got)})")
        for rec in consumer.poll():
            got.append(rec)
            seen.add(rec[2])
    quiet = time.monotonic() + 1.5
    while time.monotonic() < quiet:
        got.extend(consumer.poll())
    values = [v for _, _, v in got]
    extra = [rec for rec in got if rec[2] not in want]
    if extra:
        fail(f"{label}: records that must stay invisible: {extra[:10]}")
    if len(values) != len(set(values)):
        fail(f"{label}: records read twice: {sorted(values)}")
    for p, o, v in got:
        if want[v] != (p, o):
            fail(f"{label}: {v} at {p}/{o}, the producer was told {want[v]}")
    for part in {p for p, _, _ in got}:
        offs = [o for p, o, _ in got if p == part]
        if offs != sorted(offs):
            fail(f"{label}: partition {part} out of order: {offs}")


def read_committed(args: argparse.Namespace, deadline: float) -> None:
    client = ConfluentClient(args.bootstrap) if args.client == "confluent" else KafkaPythonClient(args.bootstrap)
    name = args.client
    txn = client.txn_producer(f"{name}-txn")
    plain = client.plain_producer()
    committed: list[str] = []
    aborted: list[str] = []
    for r in range(3):
        txn.begin()
        for i in range(10):
            txn.send(args.topic, i % 2, f"c{r}-{i}")
            committed.append(f"c{r}-{i}")
        txn.flush()
        txn.commit()
        for i in range(4):
            plain.send(args.topic, i % 2, f"n{r}-{i}")
            committed.append(f"n{r}-{i}")
        plain.flush()
        txn.begin()
        for i in range(10):
            txn.send(args.topic, i % 2, f"a{r}-{i}")
            aborted.append(f"a{r}-{i}")
        # Flushed first, so the aborted records are in the log (read_uncommitted must see them).
        txn.flush()
        txn.abort()
    # An open transaction, then non-transactional records after it: the LSO holds all of them back.
    txn.begin()
    for i in range(6):
        txn.send(args.topic, i % 2, f"o-{i}")
    txn.flush()
    for i in range(2):
        plain.send(args.topic, i, f"late-{i}")
    plain.flush()
    acks = dict(txn.acks)
    acks.update(plain.acks)
    if len(acks) != len(committed) + len(aborted) + 8:
        fail(f"{len(acks)} acknowledgements for {len(committed) + len(aborted) + 8} records")

    rc = client.consumer(args.topic, 2, "read_committed")
    got: list = []
    read_exactly(rc, {v: acks[v] for v in committed}, got, deadline, "read_committed before the last commit")
    txn.commit()
    later = committed + [f"o-{i}" for i in range(6)] + ["late-0", "late-1"]
    read_exactly(rc, {v: acks[v] for v in later}, got, deadline, "read_committed after the last commit")

    ru = client.consumer(args.topic, 2, "read_uncommitted")
    every: list = []
    read_exactly(ru, acks, every, deadline, "read_uncommitted")
    say(f"{name}: read_committed ok ({len(later)} committed, {len(aborted)} aborted records)")


def hang(args: argparse.Namespace) -> None:
    import confluent_kafka

    p = confluent_kafka.Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "broker.address.family": "v4",
            "transactional.id": args.txn_id,
            "transaction.timeout.ms": args.timeout_ms,
            "linger.ms": 0,
        }
    )
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(args.records):
        p.produce(args.topic, value=f"hung-{i}".encode(), partition=0)
    if p.flush(30) != 0:
        fail("flush did not finish")
    say("produced")
    while True:
        time.sleep(60)


def transform(args: argparse.Namespace, deadline: float) -> None:
    import confluent_kafka as ck

    base = {"bootstrap.servers": args.bootstrap, "broker.address.family": "v4"}
    c = ck.Consumer(
        dict(
            base,
            **{
                "group.id": args.group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            },
        )
    )
    md = c.list_topics(args.input, timeout=30)
    parts = sorted(md.topics[args.input].partitions)
    tps = [ck.TopicPartition(args.input, p) for p in parts]
    c.assign(tps)
    ends = {p: c.get_watermark_offsets(ck.TopicPartition(args.input, p), timeout=30)[1] for p in parts}
    producer = ck.Producer(dict(base, **{"transactional.id": args.txn_id, "linger.ms": 2}))
    producer.init_transactions(30)
    commits = 0
    records = 0
    while True:
        if time.monotonic() > deadline:
            fail("did not reach the end of the input")
        msgs = c.consume(num_messages=20, timeout=0.2)
        if not msgs:
            pos = {tp.partition: tp.offset for tp in c.position(tps)}
            if all(pos[p] >= ends[p] for p in parts):
                break
            continue
        producer.begin_transaction()
        for m in msgs:
            if m.error():
                fail(f"consume error: {m.error()}")
            producer.produce(args.output, value=b"out-" + m.value(), partition=m.partition())
        producer.flush(30)
        # Positions of partitions not read yet are invalid (-1001): only those with an offset go along.
        positions = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 30)
        if args.stall_after is not None and commits == args.stall_after:
            say("stalled")
            while True:
                time.sleep(60)
        producer.commit_transaction(30)
        commits += 1
        records += len(msgs)
        say(f"committed {commits} {records}")
    say(f"done {records}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["read-committed", "hang", "transform"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--topic")
    ap.add_argument("--txn-id")
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--records", type=int, default=5)
    ap.add_argument("--group")
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--stall-after", type=int)
    args = ap.parse_args()
    need = {"read-committed": ["topic"], "hang": ["topic", "txn_id"], "transform": ["txn_id", "group", "input", "output"]}
    for n in need[args.command]:
        if getattr(args, n) is None:
            print(f"{args.command} needs --{n.replace('_', '-')}", file=sys.stderr)
            return 2
    deadline = time.monotonic() + args.timeout
    # The hanging and stalled processes sleep until killed; the watchdog bounds them if nobody does.
    watchdog(args.timeout + 5)
    try:
        if args.command == "read-committed":
            read_committed(args, deadline)
        elif args.command == "hang":
            hang(args)
        else:
            transform(args, deadline)
    except Exception as e:  # noqa: BLE001
        fail(f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

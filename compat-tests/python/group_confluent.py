#!/usr/bin/env python3
"""Consumer group with confluent-kafka (librdkafka): subscribe, commit, resume.

Produces 60 records to a 3-partition topic; consumer A subscribes, reads 30 and commits them synchronously
(with a metadata string) and closes; consumer B in the same group reads the other 30 - none twice - and the
committed offsets (with metadata) read back through committed(). Then the admin API: the group is listed and described
(Stable, one member), DeleteGroups refuses it while B is a member and deletes it (and its offsets) after.
Exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import sys
import time


def fail(msg: str) -> None:
    print(f"group_confluent: FAIL: {msg}", flush=True)
    sys.exit(1)


def remaining(deadline: float) -> float:
    return max(0.5, deadline - time.monotonic())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout

    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    base = {"bootstrap.servers": args.bootstrap, "broker.address.family": "v4"}
    topic, group = "py-group-topic", "py-group"
    admin = AdminClient(dict(base))
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)

    p = Producer(dict(base))
    for i in range(60):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 3)
    if p.flush(30) != 0:
        fail("produce did not finish")

    def consumer() -> Consumer:
        c = Consumer(
            dict(
                base,
                **{
                    "group.id": group,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "session.timeout.ms": 6000,
                },
            )
        )
        c.subscribe([topic])
        return c

    def read(c: Consumer, n: int) -> list:
        got = []
        while len(got) < n:
            if time.monotonic() > deadline:
                fail(f"read only {len(got)} of {n}")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                fail(f"consume error {m.error()}")
            got.append((m.partition(), m.offset()))
        return got

    a = consumer()
    first = read(a, 30)
    # Commit the next offset of every partition read, with a metadata string.
    nxt: dict = {}
    for part, off in first:
        nxt[part] = max(nxt.get(part, 0), off + 1)
    a.commit(offsets=[TopicPartition(topic, part, off, "meta-" + str(part)) for part, off in nxt.items()], asynchronous=False)
    a.close()

    b = consumer()
    second = read(b, 60 - len(first))
    both = first + second
    if len(set(both)) != 60:
        fail(f"records read twice or missed: {sorted(both)}")
    committed = b.committed([TopicPartition(topic, part) for part in nxt], timeout=20)
    for tp in committed:
        if tp.error or tp.offset != nxt[tp.partition] or tp.metadata != "meta-" + str(tp.partition):
            fail(f"committed {tp} (metadata {tp.metadata!r}), want offset {nxt[tp.partition]}")
    # Admin: the group is listed and described with its one member; it cannot be deleted while B is in it.
    listed = admin.list_consumer_groups(request_timeout=20).result(timeout=remaining(deadline))
    if group not in [g.group_id for g in listed.valid]:
        fail(f"list_consumer_groups: {listed.valid} {listed.errors}")
    desc = admin.describe_consumer_groups([group], request_timeout=20)[group].result(timeout=remaining(deadline))
    if str(desc.state).split(".")[-1] != "STABLE" or len(desc.members) != 1:
        fail(f"describe_consumer_groups: state {desc.state}, {len(desc.members)} members")
    try:
        admin.delete_consumer_groups([group], request_timeout=20)[group].result(timeout=remaining(deadline))
        fail("a group with a member was deleted")
    except Exception as e:  # noqa: BLE001
        if "NON_EMPTY_GROUP" not in repr(e) and "not empty" not in repr(e).lower():
            fail(f"delete of a non-empty group: {e!r}")
    b.close()
    admin.delete_consumer_groups([group], request_timeout=20)[group].result(timeout=remaining(deadline))
    c = Consumer(dict(base, **{"group.id": group, "enable.auto.commit": False}))
    after = c.committed([TopicPartition(topic, part) for part in nxt], timeout=20)
    if any(tp.offset >= 0 for tp in after):
        fail(f"offsets survived DeleteGroups: {after}")
    c.close()
    print("group_confluent: OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

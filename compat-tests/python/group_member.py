#!/usr/bin/env python3
"""One member of a consumer group, with the client library chosen on the command line, for tests that mix
libraries in one group (compat-tests/group_behaviour.rs).

Subscribes to --topic in --group with the "roundrobin" assignor (the protocol kafka-python, aiokafka,
confluent-kafka and kafkajs can share; kafkajs's own is named "RoundRobinAssigner") and auto-commit every 200 ms,
and prints one line per event on stdout, flushed at once:
    assigned <comma-separated partitions>     whenever its assignment changes (empty after a revoke)
    record <partition> <offset>               for each record read
It runs until SIGTERM (then closes cleanly: commit and LeaveGroup) or --timeout seconds (a watchdog exits
30 s later if closing hangs).

Usage: group_member.py --client kafka-python|aiokafka|confluent --bootstrap HOST:PORT --topic T --group G
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time

stop = False


def on_term(*_args) -> None:
    global stop
    stop = True


def say(line: str) -> None:
    print(line, flush=True)


class Tracker:
    def __init__(self) -> None:
        self.last: list[int] | None = None

    def report(self, parts) -> None:
        now = sorted(parts)
        if now != self.last:
            self.last = now
            say("assigned " + ",".join(str(p) for p in now))


def run_kafka_python(a, deadline: float) -> None:
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    c = KafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=a.group,
        client_id="kafka-python",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
        partition_assignment_strategy=[RoundRobinPartitionAssignor],
    )
    c.subscribe([a.topic])
    t = Tracker()
    while not stop and time.monotonic() < deadline:
        batches = c.poll(timeout_ms=100)
        t.report(tp.partition for tp in c.assignment())
        for tp, msgs in batches.items():
            for m in msgs:
                say(f"record {m.partition} {m.offset}")
    c.close()


async def run_aiokafka(a, deadline: float) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    c = AIOKafkaConsumer(
        a.topic,
        bootstrap_servers=a.bootstrap,
        group_id=a.group,
        client_id="aiokafka",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
        partition_assignment_strategy=(RoundRobinPartitionAssignor,),
    )
    await c.start()
    t = Tracker()
    try:
        while not stop and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=100)
            t.report(tp.partition for tp in c.assignment())
            for tp, msgs in batches.items():
                for m in msgs:
                    say(f"record {m.partition} {m.offset}")
    finally:
        await c.stop()


def run_confluent(a, deadline: float) -> None:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "broker.address.family": "v4",
            "group.id": a.group,
            "client.id": "confluent",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "roundrobin",
        }
    )
    c.subscribe([a.topic])
    t = Tracker()
    while not stop and time.monotonic() < deadline:
        m = c.poll(0.1)
        t.report(tp.partition for tp in c.assignment())
        if m is None:
            continue
        if m.error():
            print(f"confluent: {m.error()}", file=sys.stderr, flush=True)
            continue
        say(f"record {m.partition()} {m.offset()}")
    c.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True, choices=["kafka-python", "aiokafka", "confluent"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + a.timeout
    # Watchdog: a client stuck connecting to a broker that is gone must not outlive the test.
    watchdog = threading.Timer(a.timeout + 30, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()
    if a.client == "kafka-python":
        run_kafka_python(a, deadline)
    elif a.client == "aiokafka":
        asyncio.run(run_aiokafka(a, deadline))
    else:
        run_confluent(a, deadline)
    say("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

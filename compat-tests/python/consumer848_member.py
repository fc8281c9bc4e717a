#!/usr/bin/env python3
"""One KIP-848 consumer group member (confluent-kafka, group.protocol=consumer) that polls until killed.

Used by compat-tests/consumer_groups.rs as a member in its own process, so the test can SIGKILL it and watch
the broker fence it at its session timeout (the client never leaves the group). Prints `assigned N` (the
number of partitions it owns) whenever its assignment changes.
"""

from __future__ import annotations

import argparse
import sys

from confluent_kafka import Consumer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    args = ap.parse_args()
    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "client.id": "py848",
        }
    )
    c.subscribe([args.topic])
    last = -1
    while True:
        msg = c.poll(0.1)
        if msg is not None and msg.error():
            print(f"error {msg.error()}", file=sys.stderr, flush=True)
        n = len(c.assignment())
        if n != last:
            print(f"assigned {n}", flush=True)
            last = n


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the Vltava client round-trip scripts.

Each roundtrip_*.py script uses one real Kafka client library to create a
topic, produce a deterministic set of keyed records (one batch of records per
compression codec), consume everything back by manual assignment (no
consumer group) and compare it with what was sent, using these helpers.

Exit codes used by every script:
    0  all records round-tripped
    1  a mismatch or client error (message on stderr)
    2  bad command line
    3  the script ran out of time (watchdog)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

NUM_PARTITIONS = 3
# 2024-01-01T00:00:00Z; every record gets an explicit CreateTime after this.
BASE_TIMESTAMP_MS = 1_704_067_200_000


class CheckFailed(Exception):
    """A round-trip mismatch; the message says exactly what differed."""


@dataclass
class Rec:
    """One record as sent, plus where the producer was told it landed."""

    codec: str
    index: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    partition: int = -1
    offset: int = -1


@dataclass
class Got:
    """One record as consumed."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None


@dataclass
class Summary:
    client: str
    records: int
    codecs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_args(client: str, default_codecs: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"{client} round trip against a Kafka-compatible broker")
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    p.add_argument("--records", type=int, default=1000, help="records per compression codec (default 1000)")
    p.add_argument(
        "--codecs",
        default=",".join(default_codecs),
        help=f"comma-separated codecs to use (default {','.join(default_codecs)})",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="overall time bound in seconds (default 120)")
    p.add_argument("--topic", default=None, help="topic name (default: a fresh unique name)")
    p.add_argument("-v", "--verbose", action="store_true", help="print progress")
    args = p.parse_args()
    args.codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if args.records < NUM_PARTITIONS:
        p.error("--records must be at least %d" % NUM_PARTITIONS)
    if args.topic is None:
        args.topic = "compat-%s-%s" % (client.replace("_", "-"), uuid.uuid4().hex[:12])
    return args


def start_watchdog(client: str, seconds: float) -> None:
    """Kill the whole process if it has not finished within `seconds`.

    A thread with os._exit is used rather than signal.alarm because the
    clients block inside C code (librdkafka) or event loops where a Python
    signal handler might never run.
    """

    def fire() -> None:
        sys.stderr.write(f"{client}: FAILED: timed out after {seconds:.0f} s\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(3)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()


def fail(client: str, message: str) -> "NoReturn":  # noqa: F821
    sys.stderr.write(f"{client}: FAILED: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def log(args: argparse.Namespace, client: str, message: str) -> None:
    if args.verbose:
        print(f"[{client} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_records(codec: str, n: int, with_headers: bool = True) -> list[Rec]:
    """A deterministic, varied set of records for one codec.

    Keys are unique ("<codec>-<index>"), values mix compressible text, random
    bytes, empty values and a few nulls (tombstones); headers vary from none
    to several, including a repeated header key and an empty header value.
    """
    rng = random.Random(f"vltava-compat-{codec}")
    out = []
    for i in range(n):
        key = f"{codec}-{i:06d}".encode()
        kind = i % 10
        if i % 97 == 13:
            value = None
        elif i % 89 == 7:
            value = b""
        elif kind < 5:
            # compressible text
            value = (f"record {i} of codec {codec}; " * rng.randint(1, 40)).encode()
        elif kind < 8:
            value = rng.randbytes(rng.randint(1, 600))
        elif kind == 8:
            value = ("žluťoučký kůň úpěl ďábelské ódy %d " % i).encode("utf-8") * rng.randint(1, 8)
        else:
            value = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 64))) * rng.randint(1, 30)
        headers: list[tuple[str, bytes]] = []
        if with_headers:
            h = i % 4
            if h >= 1:
                headers.append(("seq", str(i).encode()))
            if h >= 2:
                headers.append(("codec", codec.encode()))
                headers.append(("bin", rng.randbytes(rng.randint(0, 32))))
            if h >= 3:
                headers.append(("seq", b"dup-" + str(i).encode()))  # repeated key, order matters
                headers.append(("empty", b""))
        ts = BASE_TIMESTAMP_MS + i * 1000 + rng.randint(0, 999)
        out.append(Rec(codec, i, key, value, headers, ts))
    return out


def _norm_headers(h) -> list[tuple[str, bytes]]:
    if not h:
        return []
    res = []
    for k, v in h:
        if isinstance(k, bytes):
            k = k.decode("utf-8")
        if v is None:
            v = None
        elif not isinstance(v, bytes):
            v = bytes(v)
        res.append((k, v))
    return res


def _short(b) -> str:
    if b is None:
        return "None"
    r = repr(b)
    return r if len(r) <= 80 else r[:77] + "..."


def verify(
    client: str,
    sent: list[Rec],
    got: list[Got],
    check_headers: bool = True,
    check_timestamps: bool = True,
    check_offsets: bool = True,
) -> None:
    """Compare what was produced with what was consumed; raise CheckFailed on any difference.

    Checks, per partition: the number of records, the order (the consumed
    sequence must equal the produced sequence in the order the producer
    reported offsets), and for each record its key, value, headers,
    timestamp and (where the producer reported one) offset.
    """
    errors: list[str] = []
    for r in sent:
        if r.partition < 0 or r.partition >= NUM_PARTITIONS:
            errors.append(f"producer reported partition {r.partition} for key {r.key!r}")
    if errors:
        raise CheckFailed("; ".join(errors[:10]))

    by_part_sent: dict[int, list[Rec]] = {p: [] for p in range(NUM_PARTITIONS)}
    for r in sent:
        by_part_sent[r.partition].append(r)
    if check_offsets:
        for p, lst in by_part_sent.items():
            lst.sort(key=lambda r: r.offset)
            offs = [r.offset for r in lst]
            if len(set(offs)) != len(offs):
                raise CheckFailed(f"partition {p}: producer reported duplicate offsets")
    used = [p for p, lst in by_part_sent.items() if lst]
    if len(used) < NUM_PARTITIONS:
        raise CheckFailed(f"records were produced to partitions {used} only, expected all {NUM_PARTITIONS}")

    by_part_got: dict[int, list[Got]] = {p: [] for p in range(NUM_PARTITIONS)}
    for g in got:
        if g.partition not in by_part_got:
            raise CheckFailed(f"consumed a record from unexpected partition {g.partition}")
        by_part_got[g.partition].append(g)

    for p in range(NUM_PARTITIONS):
        s, g = by_part_sent[p], by_part_got[p]
        if len(s) != len(g):
            errors.append(f"partition {p}: produced {len(s)} records, consumed {len(g)}")
        last_off = -1
        for j, (rs, rg) in enumerate(zip(s, g)):
            where = f"partition {p} position {j} (offset {rg.offset}, sent key {rs.key!r})"
            if rg.offset <= last_off:
                errors.append(f"{where}: offset not increasing (previous {last_off})")
            last_off = rg.offset
            if check_offsets and rs.offset != rg.offset:
                errors.append(f"{where}: producer reported offset {rs.offset}, consumed at {rg.offset}")
            if rg.key != rs.key:
                errors.append(f"{where}: key mismatch: got {_short(rg.key)}")
            if rg.value != rs.value:
                errors.append(
                    f"{where}: value mismatch: sent {_short(rs.value)} (len {len(rs.value or b'')}), "
                    f"got {_short(rg.value)} (len {len(rg.value or b'')})"
                )
            if check_headers:
                gh = _norm_headers(rg.headers)
                if gh != rs.headers:
                    errors.append(f"{where}: headers mismatch: sent {rs.headers!r}, got {gh!r}")
            if check_timestamps and rg.timestamp_ms != rs.timestamp_ms:
                errors.append(f"{where}: timestamp mismatch: sent {rs.timestamp_ms}, got {rg.timestamp_ms}")
            if len(errors) > 20:
                break
        if len(errors) > 20:
            break
    if errors:
        more = "" if len(errors) <= 20 else " (further errors not shown)"
        raise CheckFailed(f"{len(errors)} mismatch(es){more}:\n  " + "\n  ".join(errors[:20]))


def expected_counts(sent: list[Rec]) -> dict[int, int]:
    c = {p: 0 for p in range(NUM_PARTITIONS)}
    for r in sent:
        c[r.partition] += 1
    return c


def check_watermarks(sent: list[Rec], low: dict[int, int], high: dict[int, int]) -> None:
    """The log of a fresh topic must start at 0 and end right after the last produced record."""
    errors = []
    for p in range(NUM_PARTITIONS):
        offs = [r.offset for r in sent if r.partition == p]
        want_high = max(offs) + 1 if offs else 0
        if low.get(p) != 0:
            errors.append(f"partition {p}: earliest offset {low.get(p)}, expected 0")
        if high.get(p) != want_high:
            errors.append(f"partition {p}: latest offset {high.get(p)}, expected {want_high}")
    if errors:
        raise CheckFailed("ListOffsets: " + "; ".join(errors))

#!/usr/bin/env bash
# Runs every non-Rust client round-trip script against a fresh broker.
#
#   compat-tests/run-client-scripts.sh [PATH/TO/vltava] [script-filter]
#
# Starts `vltava serve` on a free 127.0.0.1 port with a temporary data dir,
# waits for its "vltava ready:" line, runs the scripts one after another and
# stops the broker. Exits non-zero if any script fails. The Rust compat tests
# run the same scripts themselves; this is for running them by hand.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$root/target/debug/vltava}"
filter="${2:-}"
[[ -x "$bin" ]] || { echo "no broker binary at $bin" >&2; exit 2; }

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
work="$(mktemp -d)"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/broker.out" 2>"$work/broker.err" &
broker=$!
cleanup() { kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q '^vltava ready:' "$work/broker.out" && break
  kill -0 "$broker" 2>/dev/null || { cat "$work/broker.err" >&2; echo "broker exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^vltava ready:' "$work/broker.out" || { echo "broker not ready after 10 s" >&2; exit 1; }

scripts=(
  "python3 $root/compat-tests/python/roundtrip_confluent.py"
  "python3 $root/compat-tests/python/roundtrip_kafka_python.py"
  "python3 $root/compat-tests/python/roundtrip_aiokafka.py"
  "node $root/compat-tests/js/roundtrip_kafkajs.js"
)
# The Java client, when its jars are installed (.ci/install-deps).
if cp="$(bash "$root/compat-tests/java/classpath.sh" 2>/dev/null)"; then
  scripts+=("java -cp $cp $root/compat-tests/java/RoundTrip.java")
fi
passed=0 failed=0
for s in "${scripts[@]}"; do
  [[ -z "$filter" || "$s" == *"$filter"* ]] || continue
  echo "--- $s"
  if $s --bootstrap "127.0.0.1:$port"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
if ((failed)) && [[ -s "$work/broker.err" ]]; then
  echo "--- broker stderr (last 40 lines)"; tail -n 40 "$work/broker.err"
fi
echo "$passed passed, $failed failed"
((failed == 0))

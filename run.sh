#!/usr/bin/env bash
# Runs the broker from source: 127.0.0.1:9092, data in ./data (arguments go to `vltava`, e.g. `./run.sh topic list`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash vendor/prepare.sh
exec cargo run --release -- "$@"

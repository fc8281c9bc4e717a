#!/usr/bin/env bash
# The whole test suite: formatting, lints, then unit and compatibility tests
# (the compat tests start brokers and run the client scripts under compat-tests/).
# Run .ci/install-deps first on a fresh machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n==> %s\n' "$*"; }

step "vendor/prepare.sh (patched kafka-protocol)"
bash vendor/prepare.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test --release"
cargo test --release

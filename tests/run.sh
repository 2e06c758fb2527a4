#!/usr/bin/env bash
# The test command: formatting, lints, then every unit and integration test (the
# integration tests call the oracles in ../shared/oracles; install them first with
# `bash ../shared/oracles/install.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked

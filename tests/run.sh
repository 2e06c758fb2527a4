#!/usr/bin/env bash
# The test command (README, "The two commands"): installs what the tests need, then
# formatting, lints, and every unit and integration test. The integration tests judge kiln's
# output with the oracle wrappers in tests/oracles.
#
# tests/setup.sh installs only what is missing (apt packages, a Python venv, cloud-init's
# code) and takes about a second when everything is there; KILN_SKIP_SETUP=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${KILN_SKIP_SETUP:-0}" != 1 ]; then
  bash tests/setup.sh
fi
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked

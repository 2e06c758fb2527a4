#!/usr/bin/env bash
# fuzz/run.sh TARGET [SECONDS]: unpacks TARGET's seeds into fuzz/corpus/TARGET (the working
# corpus, not checked in) and fuzzes it for SECONDS (default 120) with cargo-fuzz. Any
# crash is saved under fuzz/artifacts/TARGET/; make it a regression (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-120}
mkdir -p "corpus/$target"
for f in "seeds/$target"/*; do
    case $f in
        *.gz) gunzip -c "$f" > "corpus/$target/$(basename "${f%.gz}")" ;;
        *) cp "$f" "corpus/$target/" ;;
    esac
done
# libFuzzer: bounded memory and time per input; -max_len large enough for a VHDX seed.
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=20 -max_len=4194304 \
    -print_final_stats=1

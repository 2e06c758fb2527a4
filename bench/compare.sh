#!/usr/bin/env bash
# compare.sh -- kiln and qemu-img side by side on the benchmark corpus, in one run.
#
#   bench/compare.sh [--raw IMG] [--runs N] [--only id,id,...] [--out DIR] [--kiln BIN]
#
# Without --raw it uses (and if needed builds) the `os` corpus of
# ../shared/bench/make-corpus.sh (4 GiB virtual, ~1.2 GiB of real files).
# For every row it runs qemu-img and kiln, N times each (best run kept), with the source
# warm in the page cache, under /usr/bin/time -v. kiln fsyncs its output before renaming
# it into place; qemu-img 10 does not sync on exit (strace shows no fsync/fdatasync), so
# a second qemu-img line, `qemu+sync`, times `qemu-img ... && sync FILE`: the same
# durability as kiln. Columns: wall seconds, MB/s of virtual size (10^6 B/s), output
# apparent and allocated MiB, peak RSS MiB, and kiln's time and size ratios against
# plain qemu-img and against qemu+sync.
# Row ids match ../shared/bench/baseline.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${KILN_SHARED:-$ROOT/../shared}"
RAW=""; RUNS=3; ONLY=""; OUT=""; KILN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --raw) RAW="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --kiln) KILN="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "qemu-img missing (apt-get install qemu-utils)" >&2; exit 1; }
if [ -z "$KILN" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  KILN="$ROOT/target/release/kiln"
fi
if [ -z "$RAW" ]; then
  RAW="$("$SHARED/bench/make-corpus.sh" --variant os | awk '{print $2}' | tail -1)"
fi
[ -f "$RAW" ] || { echo "raw image $RAW not found" >&2; exit 1; }
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kiln-compare.XXXXXX")}"
mkdir -p "$OUT"
trap 'rm -rf "$OUT"/cmp-*' EXIT
VSIZE=$(stat -c %s "$RAW")
ALLOC=$(( $(du -k "$RAW" | cut -f1) * 1024 ))

# id | qemu-img driver | qemu options | kiln format | kiln options | extension
ROWS=(
  "raw|raw||raw||raw"
  "qcow2|qcow2||qcow2||qcow2"
  "qcow2-prealloc-metadata|qcow2|-o preallocation=metadata|qcow2|-o preallocation=metadata|qcow2"
  "vmdk-monolithicSparse|vmdk|-o subformat=monolithicSparse|vmdk|-o subformat=monolithicSparse|vmdk"
  "vmdk-streamOptimized|vmdk|-o subformat=streamOptimized|vmdk|-o subformat=streamOptimized|vmdk"
  "vhd-dynamic|vpc|-o subformat=dynamic|vhd|-o subformat=dynamic|vhd"
  "vhd-fixed|vpc|-o subformat=fixed|vhd|-o subformat=fixed|vhd"
  "vdi|vdi||vdi||vdi"
  "vhdx|vhdx||vhdx||vhdx"
  "create-qcow2-prealloc-metadata-8G|qcow2|-o preallocation=metadata|qcow2|-o preallocation=metadata|qcow2"
)

cat "$RAW" > /dev/null   # same warm page cache for both tools

# time_cmd TOOL ID ... -> "seconds rss_kib out_bytes alloc_bytes" of the best run, or "fail"
time_cmd() {
  local dst="$1"; shift
  local best="" brss="" tv="$OUT/cmp-time.txt"
  for ((r=1; r<=RUNS; r++)); do
    rm -f "$dst" "${dst%.*}-flat.${dst##*.}"
    local start end secs
    start=$(date +%s.%N)
    if ! /usr/bin/time -v -o "$tv" "$@" >"$OUT/cmp-log.txt" 2>&1; then
      echo "fail $(head -c 200 "$OUT/cmp-log.txt" | tr '\n' ' ')"; return
    fi
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b-a}')
    if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN{exit !(a<b)}'; then
      best=$secs; brss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$tv")
    fi
  done
  local out al
  out=$(stat -c %s "$dst"); al=$(( $(du -k "$dst" | cut -f1) * 1024 ))
  echo "$best $brss $out $al"
}

printf '# %s vs kiln %s; %s cores; best of %s runs\n' "$(qemu-img --version | head -1)" \
  "$("$KILN" --version | awk '{print $2}')" "$(nproc)" "$RUNS"
printf '# source %s: virtual %d MiB, allocated %d MiB\n' "$(basename "$RAW")" $((VSIZE/1048576)) $((ALLOC/1048576))
printf '| %-34s | %-9s | %8s | %10s | %9s | %9s | %7s | %9s | %10s | %10s |\n' \
  target tool seconds "MB/s(virt)" out-MiB alloc-MiB RSS-MiB "time/qemu" "time/q+sync" "size/qemu"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" ----------- ---------: \
  ------------: -----------: -----------: ---------: ----------: ------------: ------------:
for row in "${ROWS[@]}"; do
  IFS='|' read -r id qfmt qopts kfmt kopts ext <<<"$row"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$id,"* ]]; then continue; fi
  qdst="$OUT/cmp-q-$id.$ext"; kdst="$OUT/cmp-k-$id.$ext"
  if [[ $id == create-* ]]; then
    vs=$((8 << 30))
    qcmd=(qemu-img create -q -f "$qfmt" $qopts "$qdst" 8G)
    kcmd=("$KILN" create -f "$kfmt" $kopts "$kdst" 8G)
  else
    vs=$VSIZE
    qcmd=(qemu-img convert -f raw -O "$qfmt" $qopts "$RAW" "$qdst")
    kcmd=("$KILN" convert -f raw -O "$kfmt" $kopts "$RAW" "$kdst")
  fi
  q=$(time_cmd "$qdst" "${qcmd[@]}")
  qs=$(time_cmd "$qdst" bash -c '"$@" && sync "$0"' "$qdst" "${qcmd[@]}")
  k=$(time_cmd "$kdst" "${kcmd[@]}")
  for tool in qemu-img qemu+sync kiln; do
    case $tool in qemu-img) res=$q ;; qemu+sync) res=$qs ;; kiln) res=$k ;; esac
    if [[ $res == fail* ]]; then
      printf '| %-34s | %-9s | %s |\n' "$id" "$tool" "${res#fail }"; continue
    fi
    read -r s rss o a <<<"$res"
    r1="" r2="" sr=""
    if [ $tool = kiln ] && [[ $q != fail* ]] && [[ $qs != fail* ]]; then
      read -r q1 _ qo _ <<<"$q"; read -r q2 _ _ _ <<<"$qs"
      r1=$(awk -v k="$s" -v q="$q1" 'BEGIN{printf "%.2f", k/q}')
      r2=$(awk -v k="$s" -v q="$q2" 'BEGIN{printf "%.2f", k/q}')
      sr=$(awk -v k="$o" -v q="$qo" 'BEGIN{printf "%.3f", k/q}')
    fi
    awk -v id="$id" -v t="$tool" -v s="$s" -v vs="$vs" -v o="$o" -v a="$a" -v r="$rss" -v r1="$r1" -v r2="$r2" -v sr="$sr" \
      'BEGIN{printf "| %-34s | %-9s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %9s | %10s | %10s |\n", id, t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, r1, r2, sr}'
  done
  rm -f "$qdst" "$kdst" "${qdst%.*}-flat.$ext" "${kdst%.*}-flat.$ext"
done

#!/usr/bin/env bash
# cmp-old-new.sh -- prove that a redesign changed no output byte: the same commands run with
# two kiln binaries, every artefact compared with `cmp`.
#
#   bench/cmp-old-new.sh OLD_KILN NEW_KILN [RAW] [--out DIR]
#
# RAW defaults to the `os` corpus of ../shared/bench/make-corpus.sh (4 GiB). For every
# format and option the benchmark and the tests use, it converts RAW with both binaries and
# compares; reads every output back to raw with both and compares; builds a spec with
# qcow2 + OVA + OVF + raw + VHD outputs with both and compares every file; writes an ISO
# from a directory with both. Prints one line per comparison and a final count; exits 1 on
# any difference.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OLD="$1"; NEW="$2"; shift 2
RAW=""; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    *) RAW="$1"; shift ;;
  esac
done
if [ -z "$RAW" ]; then
  RAW="$("$HERE/../../shared/bench/make-corpus.sh" --variant os | awk '{print $2}' | tail -1)"
fi
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kiln-cmp.XXXXXX")}"
mkdir -p "$OUT"
export SOURCE_DATE_EPOCH=1700000000
same=0; differ=0
check() {  # check LABEL A B
  if cmp -s "$2" "$3"; then same=$((same + 1)); echo "same     $1"
  else differ=$((differ + 1)); echo "DIFFERS  $1 ($2 vs $3)"; fi
}

# format | options | extension
CASES=(
  "raw||raw"
  "qcow2||qcow2"
  "qcow2|-o preallocation=metadata|qcow2"
  "qcow2|-o compat=0.10|qcow2"
  "qcow2|-o cluster_size=2M|qcow2"
  "qcow2|-c|qcow2"
  "vmdk|-o subformat=monolithicSparse|vmdk"
  "vmdk|-o subformat=streamOptimized|vmdk"
  "vmdk|-o subformat=monolithicFlat|vmdk"
  "vhd|-o subformat=dynamic|vhd"
  "vhd|-o subformat=fixed|vhd"
  "vhd|-o subformat=fixed,azure=on|vhd"
  "vdi||vdi"
  "vdi|-o static=on|vdi"
  "vhdx||vhdx"
  "vhdx|-o subformat=fixed|vhdx"
  "vhdx|-o block_state_zero=on|vhdx"
)
# Derived ids come from the output's file name, so both binaries write the same name, each
# in a directory of its own.
mkdir -p "$OUT/old" "$OUT/new"
for c in "${CASES[@]}"; do
  IFS='|' read -r fmt opts ext <<<"$c"
  for who in old new; do
    bin=$OLD; [ $who = new ] && bin=$NEW
    rm -f "$OUT/$who/img.$ext" "$OUT/$who/img-flat.$ext"
    # shellcheck disable=SC2086
    "$bin" convert -t unsafe -f raw -O "$fmt" $opts "$RAW" "$OUT/$who/img.$ext"
  done
  check "convert -O $fmt $opts" "$OUT/old/img.$ext" "$OUT/new/img.$ext"
  if [ -f "$OUT/old/img-flat.$ext" ]; then
    check "  its flat extent" "$OUT/old/img-flat.$ext" "$OUT/new/img-flat.$ext"
  fi
  # Read back by both binaries (the readers must agree too).
  for who in old new; do
    bin=$OLD; [ $who = new ] && bin=$NEW
    rm -f "$OUT/$who/back.raw"
    "$bin" convert -t unsafe -f "$fmt" -O raw "$OUT/new/img.$ext" "$OUT/$who/back.raw"
  done
  check "  read back from $fmt $opts" "$OUT/old/back.raw" "$OUT/new/back.raw"
  rm -f "$OUT"/old/* "$OUT"/new/*
done

# A build with every container the old binary writes.
cat > "$OUT/spec.yaml" <<EOF
name: cmp
version: "1.0"
vm: { cpus: 2, memory: 2GiB, os: ubuntu-64 }
disks:
  - name: root
    source: { file: $RAW }
outputs:
  - { disk_format: qcow2, container_format: bare }
  - { disk_format: raw, container_format: bare }
  - { disk_format: vhd, container_format: bare, options: { subformat: fixed } }
  - { disk_format: vmdk, container_format: ova }
  - { disk_format: vmdk, container_format: ovf, file: cmp-ovf.ovf, target: virtualbox, manifest: sha1 }
EOF
for who in old new; do
  bin=$OLD; [ $who = new ] && bin=$NEW
  rm -rf "$OUT/build-$who"
  "$bin" build --quiet "$OUT/spec.yaml" -o "$OUT/build-$who" >/dev/null
done
for f in "$OUT"/build-old/*; do
  check "build: $(basename "$f")" "$f" "$OUT/build-new/$(basename "$f")"
done
rm -rf "$OUT"/build-*

# An ISO from a directory tree.
tree="$OUT/tree"; rm -rf "$tree"; mkdir -p "$tree/sub"
cp /usr/bin/ls /usr/bin/cp "$tree/"; cp -r /usr/share/doc/bash "$tree/sub/" 2>/dev/null || true
for who in old new; do
  bin=$OLD; [ $who = new ] && bin=$NEW
  rm -f "$OUT/$who/t.iso"
  "$bin" convert -O iso -o volume_label=CMP "$tree" "$OUT/$who/t.iso"
done
check "convert -O iso DIR" "$OUT/old/t.iso" "$OUT/new/t.iso"
rm -rf "$tree" "$OUT"/old "$OUT"/new
echo "$same same, $differ differ"
[ "$differ" -eq 0 ]

#!/usr/bin/env bash
# cmp-old-new.sh -- prove that a redesign changed no output byte: the same commands run with
# two kiln binaries, every artefact compared with `cmp`.
#
#   bench/cmp-old-new.sh OLD_KILN NEW_KILN [RAW] [--out DIR] [--only-stream]
#
# RAW defaults to the `os` corpus of ../shared/bench/make-corpus.sh (4 GiB). For every
# format and option the benchmark and the tests use, it converts RAW with both binaries and
# compares; reads every output back to raw with both and compares; builds a spec with
# qcow2 + OVA + OVF + raw + VHD outputs with both and compares every file; writes an ISO
# from a directory with both; reads streamOptimized VMDKs (kiln's and qemu-img's) and an
# OVA as sources into raw, qcow2 and vhdx with both (--only-stream: just this part, the
# one that exercises the VMDK reader's grain inflation). Prints one line per comparison and a final count; exits 1 on
# any difference.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OLD="$1"; NEW="$2"; shift 2
RAW=""; OUT=""; ONLY_STREAM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --only-stream) ONLY_STREAM=1; shift ;;
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

if [ -z "$ONLY_STREAM" ]; then
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
fi

# Stream VMDKs and an OVA as sources: one written by the old kiln, one by qemu-img (its
# layout differs), and an OVA built by the old kiln, each read into raw, qcow2 and vhdx by
# both binaries.
mkdir -p "$OUT/old" "$OUT/new" "$OUT/src"
"$OLD" convert -t unsafe -f raw -O vmdk -o subformat=streamOptimized "$RAW" "$OUT/src/k.vmdk"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$RAW" "$OUT/src/q.vmdk"
printf '%s\n' "name: s" "disks:" "  - name: root" "    source: { file: $RAW }" "outputs:" \
  "  - { disk_format: vmdk, container_format: ova }" > "$OUT/src/s.yaml"
"$OLD" build --quiet "$OUT/src/s.yaml" -o "$OUT/src/build" > /dev/null
for src in "$OUT/src/k.vmdk" "$OUT/src/q.vmdk" "$OUT/src/build/s.ova"; do
  # An old binary from before OVA reading refuses the package: that is a missing feature,
  # not a changed byte, so the OVA is then compared only with what the new one reads.
  if [[ $src == *.ova ]] && ! "$OLD" info "$src" > /dev/null 2>&1; then
    rm -f "$OUT/new/s.raw"
    "$NEW" convert -t unsafe -O raw "$src" "$OUT/new/s.raw"
    echo "skip     $(basename "$src"): the old binary cannot read OVAs"
    check "  new raw of the OVA equals the source" "$RAW" "$OUT/new/s.raw"
    continue
  fi
  for fmt in raw qcow2 vhdx; do
    for who in old new; do
      bin=$OLD; [ $who = new ] && bin=$NEW
      rm -f "$OUT/$who/s.$fmt"
      "$bin" convert -t unsafe -O "$fmt" "$src" "$OUT/$who/s.$fmt"
    done
    check "convert $(basename "$src") -O $fmt" "$OUT/old/s.$fmt" "$OUT/new/s.$fmt"
    if [ "$fmt" = raw ]; then check "  new raw equals the source" "$RAW" "$OUT/new/s.raw"; fi
  done
done
rm -rf "$OUT/src" "$OUT"/old "$OUT"/new

echo "$same same, $differ differ"
[ "$differ" -eq 0 ]

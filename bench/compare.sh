#!/usr/bin/env bash
# compare.sh -- kiln and qemu-img side by side on the benchmark corpus, in one run.
#
#   bench/compare.sh [--raw IMG] [--runs N] [--only id,id,...] [--out DIR] [--kiln BIN]
#                    [--tree DIR]
#
# The `build` row runs one `kiln build` of qcow2 + OVA + raw from the corpus against three
# builds of one output each (ratio: build / slowest single build).
# The `ova-read` row converts the disk inside an OVA (read in place) and the same VMDK
# extracted, to raw (ratio: OVA / extracted).
# The `stream-read` row converts a streamOptimized VMDK of the corpus to raw, kiln -t unsafe
# against qemu-img (neither syncs; ratio kiln / qemu-img).
# The `verify` row checks an OVA of the corpus with `kiln verify` against `sha256sum` of the
# OVA plus `qemu-img check` of its extracted VMDK (ratio: kiln / that pair).
# The `iso-tree` row writes a directory tree into an ISO (kiln convert -O iso DIR vs
# xorriso -as mkisofs -R -J); the tree is --tree, else ~2 GiB of /usr hard-linked into
# $TMPDIR/kiln-bench/iso-tree (made once). Its pair is xorriso; a `dd conv=fsync` of the
# same byte count shows the disk's sequential write speed.
#
# The `bundle` row makes an EC2 bundle of the corpus (kiln bundle) against the reference
# pipeline `tar -c -h -S --owner 0 --group 0 | tee >(sha1sum) | gzip -9 -n | openssl enc
# -aes-128-cbc | split -b 10M` + `sha1sum` of the parts (the tar's SHA1 is the manifest's
# image digest, so both compute it). Pairs as above: reference vs kiln -t unsafe, and
# reference+sync vs kiln. Size ratio: kiln's parts / the reference's parts.
#
# The `triplet` row cuts the Glance ami/aki/ari out of a partitioned disk: the corpus (an
# ext4 file system) with a kernel, a /boot/vmlinuz symlink and an initrd added by debugfs,
# as partition 1 of a GPT disk; `kiln build` of the triplet against `dd` of the partition
# plus `debugfs -R cat` of the kernel and initrd, all synced (ratio: kiln / that), and the
# same plus `sha256sum` of the three files, the work kiln also does for SHA256SUMS (its
# ratio: kiln / that pipeline).
#
# The `ova-disk` row makes an OVA of the corpus with `kiln ova --disk` against `kiln convert
# -O vmdk -o subformat=streamOptimized` of the same disk, both synced (ratio: ova / convert).
#
# The `source-vmdk-xz` row does the same with the corpus as a streamOptimized VMDK (made by
# kiln convert) compressed with `xz -T2 -3`, which kiln reads front to back, inflating the
# grains on all cores, against `xz -dc -T1 > /dev/null` of the same file ($RAW.vmdk.xz).
#
# The `source-xz` and `source-zst` rows build a qcow2 from the corpus compressed with xz
# (`xz -T2 -3`) and zstd (`zstd -T2 -3`) as a `file:` source, streamed through the decoder
# (kiln build, synced), against the decompressor alone in the same run (`xz -dc -T1 >
# /dev/null`, `zstd -dc > /dev/null`); ratio kiln / decompressor (targets: <= 1.1 for xz,
# <= 1.11, i.e. >= 90% of zstd's speed, for zstd). For zstd, also like for like: `zstd -d
# -o FILE` then `sync` (a sparse raw file written and synced, as kiln's qcow2 is). The compressed corpus is made once next
# to the raw one ($RAW.xz, $RAW.zst).
#
# Without --raw it uses (and if needed builds) the `os` corpus of
# ../shared/bench/make-corpus.sh (4 GiB virtual, ~1.2 GiB of real files).
# For every row it runs each tool N times (best run kept), each after a `sync`, with the source warm in the
# page cache, under /usr/bin/time -v, in two like-for-like pairs:
#   qemu-img        vs  kiln -t unsafe   neither syncs (qemu-img convert's default cache
#                                        mode is unsafe: strace shows no fsync/fdatasync)
#   qemu-img+sync   vs  kiln             both on disk: `qemu-img ... && sync FILE`, and
#                                        kiln's default fsync before its rename
# Columns: wall seconds, MB/s of virtual size (10^6 B/s), output apparent and allocated
# MiB, peak RSS MiB, kiln's time ratio against its pair, and its size ratio to qemu-img.
# Row ids match ../shared/bench/baseline.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${KILN_SHARED:-$ROOT/../shared}"
RAW=""; RUNS=3; ONLY=""; OUT=""; KILN=""; TREE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --raw) RAW="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --kiln) KILN="$2"; shift 2 ;;
    --tree) TREE="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
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

# time_cmd DST CMD... -> "seconds rss_kib out_bytes alloc_bytes" of the best run, or "fail";
# DST is the output file, or a directory emptied before each run.
time_cmd() {
  local dst="$1"; shift
  local best="" brss="" tv="$OUT/cmp-time.txt"
  for ((r=1; r<=RUNS; r++)); do
    if [ -d "$dst" ]; then rm -rf "${dst:?}"/*; else rm -f "$dst" "${dst%.*}-flat.${dst##*.}"; fi
    sync   # no tool pays for the previous one's writeback
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
printf '| %-34s | %-14s | %8s | %10s | %9s | %9s | %7s | %10s | %10s |\n' \
  target tool seconds "MB/s(virt)" out-MiB alloc-MiB RSS-MiB "time ratio" "size ratio"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" ---------------- ---------: \
  ------------: -----------: -----------: ---------: ------------: ------------:
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
  declare -A res=()
  res[qemu-img]=$(time_cmd "$qdst" "${qcmd[@]}")
  res[kiln -t unsafe]=$(time_cmd "$kdst" "${kcmd[0]}" "${kcmd[1]}" -t unsafe "${kcmd[@]:2}")
  res[qemu-img+sync]=$(time_cmd "$qdst" bash -c '"$@" && sync "$0"' "$qdst" "${qcmd[@]}")
  res[kiln]=$(time_cmd "$kdst" "${kcmd[@]}")
  for tool in qemu-img "kiln -t unsafe" qemu-img+sync kiln; do
    r=${res[$tool]}
    if [[ $r == fail* ]]; then
      printf '| %-34s | %-14s | %s |\n' "$id" "$tool" "${r#fail }"; continue
    fi
    read -r s rss o a <<<"$r"
    pair=""; tr=""; sr=""
    case $tool in "kiln -t unsafe") pair=${res[qemu-img]} ;; kiln) pair=${res[qemu-img+sync]} ;; esac
    if [ -n "$pair" ] && [[ $pair != fail* ]]; then
      read -r ps _ po _ <<<"$pair"
      tr=$(awk -v k="$s" -v q="$ps" 'BEGIN{printf "%.2f", k/q}')
      sr=$(awk -v k="$o" -v q="$po" 'BEGIN{printf "%.3f", k/q}')
    fi
    awk -v id="$id" -v t="$tool" -v s="$s" -v vs="$vs" -v o="$o" -v a="$a" -v r="$rss" -v tr="$tr" -v sr="$sr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", id, t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, sr}'
  done
  unset res
  rm -f "$qdst" "$kdst" "${qdst%.*}-flat.$ext" "${kdst%.*}-flat.$ext"
done

# build: one `kiln build` writing qcow2 + OVA (streamOptimized VMDK inside) + raw from the
# corpus in one pass, hashes, report and SHA256SUMS included, against three `kiln build`s
# of one output each (all synced). The issue's yardstick is the slowest single build;
# `time ratio` is build / slowest. The last line is the reference OVA pipeline (qemu-img,
# sha256sum, tar); its ratio is kiln's OVA-only build / the pipeline.
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",build,"* ]]; then
  bdir="$OUT/cmp-build"; rm -rf "$bdir"; mkdir -p "$bdir"
  declare -A line=(
    [qcow2]="  - { disk_format: qcow2, container_format: bare }"
    [ova]="  - { disk_format: vmdk, container_format: ova }"
    [raw]="  - { disk_format: raw, container_format: bare }"
  )
  spec_for() {  # spec_for NAME OUTPUT-KEYS... -> writes $OUT/NAME.yaml
    local name=$1; shift
    { printf '%s\n' "name: $name" "disks:" "  - name: root" "    source: { file: $RAW }" "outputs:"
      for k in "$@"; do printf '%s\n' "${line[$k]}"; done; } > "$OUT/$name.yaml"
  }
  declare -A single=()
  for f in qcow2 ova raw; do
    spec_for "cmp-one-$f" $f
    single[$f]=$(time_cmd "$bdir" "$KILN" build --quiet "$OUT/cmp-one-$f.yaml" -o "$bdir")
  done
  # The reference OVA pipeline: qemu-img's streamOptimized VMDK, a manifest by sha256sum, a
  # tar (the descriptor is a stand-in: writing one by hand takes no measurable time).
  ref=$(time_cmd "$bdir" bash -c 'cd "$0" && qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$1" r-disk1.vmdk && echo "<Envelope/>" > r.ovf && sha256sum r.ovf r-disk1.vmdk > r.mf && tar --format=ustar -cf r.ova r.ovf r.mf r-disk1.vmdk && rm r-disk1.vmdk && sync r.ova' "$bdir" "$RAW")
  spec_for cmp-build qcow2 ova raw
  b=$(time_cmd "$bdir" "$KILN" build --quiet "$OUT/cmp-build.yaml" -o "$bdir")
  slowest=0
  for f in qcow2 ova raw; do
    r=${single[$f]}; [[ $r == fail* ]] && continue
    read -r s _ _ _ <<<"$r"
    slowest=$(awk -v a="$s" -v b="$slowest" 'BEGIN{print (a>b)?a:b}')
  done
  for tool in qcow2 ova raw build reference; do
    case $tool in
      build) r=$b; t="all three" ;;
      reference) r=$ref; t="qemu-img+tar" ;;
      *) r=${single[$tool]}; t="only $tool" ;;
    esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' build "$t" "${r#fail }"; continue; fi
    read -r s rss o a <<<"$r"; tr=""
    [ $tool = build ] && tr=$(awk -v k="$s" -v q="$slowest" 'BEGIN{printf "%.2f", k/q}')
    # The reference row's ratio is kiln's single OVA build against it.
    if [ $tool = reference ] && [[ ${single[ova]} != fail* ]]; then
      read -r os _ _ _ <<<"${single[ova]}"
      tr=$(awk -v k="$os" -v q="$s" 'BEGIN{printf "%.2f", k/q}')
    fi
    awk -v t="$t" -v s="$s" -v vs="$VSIZE" -v r="$rss" -v tr="$tr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9s | %9s | %7.1f | %10s | %10s |\n", "kiln build qcow2+ova+raw", t, s, vs/s/1e6, "", "", r/1024, tr, ""}'
  done
  rm -rf "$bdir"
fi

# ova-read: the disk inside an OVA read in place (through the tar reader and a view) against
# the same VMDK extracted, both converted to raw by kiln (-t unsafe); ratio OVA / extracted.
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",ova-read,"* ]]; then
  odir="$OUT/cmp-ova"; rm -rf "$odir"; mkdir -p "$odir"
  "$KILN" convert -t unsafe -f raw -O vmdk -o subformat=streamOptimized "$RAW" "$odir/d.vmdk"
  echo "<Envelope/>" > "$odir/d.ovf"
  (cd "$odir" && tar --format=ustar -cf d.ova d.ovf d.vmdk)
  cat "$odir/d.ova" "$odir/d.vmdk" > /dev/null
  e=$(time_cmd "$odir/e.raw" "$KILN" convert -t unsafe "$odir/d.vmdk" "$odir/e.raw")
  o=$(time_cmd "$odir/o.raw" "$KILN" convert -t unsafe "$odir/d.ova" "$odir/o.raw")
  for tool in extracted ova; do
    case $tool in extracted) r=$e; t="kiln d.vmdk" ;; *) r=$o; t="kiln d.ova" ;; esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' ova-read "$t" "${r#fail }"; continue; fi
    read -r s rss out al <<<"$r"; tr=""
    if [ $tool = ova ] && [[ $e != fail* ]]; then
      read -r es _ _ _ <<<"$e"; tr=$(awk -v k="$s" -v q="$es" 'BEGIN{printf "%.2f", k/q}')
    fi
    awk -v t="$t" -v s="$s" -v vs="$VSIZE" -v o="$out" -v a="$al" -v r="$rss" -v tr="$tr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", "ova-read (to raw)", t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, ""}'
  done
  rm -rf "$odir"
fi

# stream-read: a streamOptimized VMDK of the corpus (written by kiln) to raw, grain
# inflation being most of the work; kiln -t unsafe vs qemu-img, ratio kiln / qemu-img.
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",stream-read,"* ]]; then
  sdir="$OUT/cmp-stream"; rm -rf "$sdir"; mkdir -p "$sdir"
  "$KILN" convert -t unsafe -f raw -O vmdk -o subformat=streamOptimized "$RAW" "$sdir/s.vmdk"
  cat "$sdir/s.vmdk" > /dev/null
  q=$(time_cmd "$sdir/q.raw" qemu-img convert -f vmdk -O raw "$sdir/s.vmdk" "$sdir/q.raw")
  k=$(time_cmd "$sdir/k.raw" "$KILN" convert -t unsafe -f vmdk -O raw "$sdir/s.vmdk" "$sdir/k.raw")
  for tool in qemu-img kiln; do
    case $tool in kiln) r=$k; t="kiln -t unsafe" ;; *) r=$q; t="qemu-img" ;; esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' stream-read "$t" "${r#fail }"; continue; fi
    read -r s rss out al <<<"$r"; tr=""
    if [ $tool = kiln ] && [[ $q != fail* ]]; then
      read -r qs _ _ _ <<<"$q"; tr=$(awk -v k="$s" -v q="$qs" 'BEGIN{printf "%.2f", k/q}')
    fi
    awk -v t="$t" -v s="$s" -v vs="$VSIZE" -v o="$out" -v a="$al" -v r="$rss" -v tr="$tr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", "stream-read (vmdk to raw)", t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, ""}'
  done
  rm -rf "$sdir"
fi

# verify: `kiln verify` of an OVA of the corpus (every digest, the VMDK read through) against
# the issue's yardstick, `sha256sum` of the OVA plus `qemu-img check` of the extracted VMDK in
# the same run; ratio kiln / (sha256sum + qemu-img check). Both report to a file (the `out`
# column is the report's size).
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",verify,"* ]]; then
  vdir="$OUT/cmp-verify"; rm -rf "$vdir"; mkdir -p "$vdir"
  printf '%s\n' "name: v" "disks:" "  - name: root" "    source: { file: $RAW }" "outputs:" \
    "  - { disk_format: vmdk, container_format: ova }" > "$vdir/v.yaml"
  "$KILN" build --quiet "$vdir/v.yaml" -o "$vdir" > /dev/null
  (cd "$vdir" && tar xf v.ova v-disk1.vmdk)
  cat "$vdir/v.ova" "$vdir/v-disk1.vmdk" > /dev/null   # same warm page cache for both
  ref=$(time_cmd "$vdir/ref.txt" bash -c 'sha256sum "$1" > "$0" && qemu-img check "$2" >> "$0"' \
    "$vdir/ref.txt" "$vdir/v.ova" "$vdir/v-disk1.vmdk")
  k=$(time_cmd "$vdir/kiln.txt" bash -c '"$1" verify "$2" > "$0"' "$vdir/kiln.txt" "$KILN" "$vdir/v.ova")
  for tool in reference kiln; do
    case $tool in kiln) r=$k; t="kiln verify" ;; *) r=$ref; t="sha256sum+check" ;; esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' verify "$t" "${r#fail }"; continue; fi
    read -r s rss o a <<<"$r"; tr=""
    if [ $tool = kiln ] && [[ $ref != fail* ]]; then
      read -r rs _ _ _ <<<"$ref"; tr=$(awk -v k="$s" -v q="$rs" 'BEGIN{printf "%.2f", k/q}')
    fi
    awk -v t="$t" -v s="$s" -v vs="$VSIZE" -v o="$o" -v a="$a" -v r="$rss" -v tr="$tr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", "verify (OVA of the corpus)", t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, ""}'
  done
  rm -rf "$vdir"
fi

# source-xz / source-zst: a compressed source streamed into a qcow2 build against the
# decompressor alone (see the header).
for codec in xz zst vmdk-xz; do
  id="source-$codec"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$id,"* ]]; then continue; fi
  label="source raw.$codec -> qcow2"
  case $codec in
    xz) tool=xz; make=(xz -T2 -3 -c); dec=(xz -dc -T1) ;;
    zst) tool=zstd; make=(zstd -q -T2 -3 -c); dec=(zstd -q -dc) ;;
    vmdk-xz) tool=xz; make=(xz -T2 -3 -c); dec=(xz -dc -T1); label="source vmdk.xz -> qcow2" ;;
  esac
  command -v $tool >/dev/null || { echo "$tool missing (apt-get install ${tool/xz/xz-utils})" >&2; exit 1; }
  packed="$RAW.${codec/-/.}"
  if [ ! -f "$packed" ]; then
    input=$RAW
    if [ "$codec" = vmdk-xz ]; then
      # The corpus as a streamOptimized VMDK (kiln's writer: qemu-img's takes minutes), then xz.
      input="$RAW.vmdk"
      [ -f "$input" ] || "$KILN" convert -O vmdk -o subformat=streamOptimized "$RAW" "$input"
    fi
    "${make[@]}" "$input" > "$packed.new" && mv "$packed.new" "$packed"
  fi
  sdir="$OUT/cmp-$id"; ddir="$OUT/cmp-$id-dec"; rm -rf "$sdir" "$ddir"; mkdir -p "$sdir" "$ddir"
  printf '%s\n' "name: s" "disks:" "  - name: root" "    source: { file: $packed }" "outputs:" \
    "  - { disk_format: qcow2, container_format: bare }" > "$OUT/cmp-$id.yaml"
  cat "$packed" > /dev/null   # warm for both
  d=$(time_cmd "$ddir" bash -c '"${@:1}" "$0" > /dev/null' "$packed" "${dec[@]}")
  k=$(time_cmd "$sdir" "$KILN" build --quiet "$OUT/cmp-$id.yaml" -o "$sdir")
  tools=("$tool -dc" "kiln build")
  if [ "$codec" = zst ]; then
    # Like for like: zstd writing the (sparse) raw image to a file and syncing it, as kiln
    # writes its qcow2 and syncs it; kiln's ratio against it is the second kiln line.
    wdir="$OUT/cmp-$id-file"; rm -rf "$wdir"; mkdir -p "$wdir"
    w=$(time_cmd "$wdir/out.raw" bash -c 'zstd -q -d -o "$1/out.raw" "$0" && sync -f "$1/out.raw"' "$packed" "$wdir")
    tools=("$tool -dc" "zstd -d -o+sync" "kiln build" "kiln / -o+sync")
  fi
  for t in "${tools[@]}"; do
    base=$d
    case $t in "kiln /"*) r=$k; base=$w ;; kiln*) r=$k ;; zstd\ -d\ -o*) r=$w ;; *) r=$d ;; esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' "$id" "$t" "${r#fail }"; continue; fi
    read -r s rss o a <<<"$r"; tr=""
    if [[ $t == kiln* ]] && [[ $base != fail* ]]; then
      read -r ds _ _ _ <<<"$base"; tr=$(awk -v k="$s" -v q="$ds" 'BEGIN{printf "%.2f", k/q}')
      o=$(stat -c %s "$sdir/s.qcow2" 2>/dev/null || echo 0); a=$(( $(du -k "$sdir/s.qcow2" | cut -f1) * 1024 ))
    fi
    awk -v id="$label" -v t="$t" -v s="$s" -v vs="$VSIZE" -v o="$o" -v a="$a" -v r="$rss" -v tr="$tr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", id, t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, ""}'
  done
  rm -rf "$sdir" "$ddir" "${wdir:-}"
done

# iso-tree: a directory into an ISO, kiln vs xorriso (both synced, as kiln always is).
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",iso-tree,"* ]]; then
  if [ -z "$TREE" ]; then
    TREE="${TMPDIR:-/tmp}/kiln-bench/iso-tree"
    if [ ! -d "$TREE" ]; then
      mkdir -p "$TREE.new"
      # Regular files only (no device nodes), hard links so nothing is copied; ~2 GiB.
      budget=$((2 << 30)); total=0
      while IFS= read -r -d '' f; do
        sz=$(stat -c %s "$f"); [ $((total + sz)) -gt $budget ] && break
        mkdir -p "$TREE.new/$(dirname "$f")"; ln "$f" "$TREE.new/$f" 2>/dev/null || cp "$f" "$TREE.new/$f"
        total=$((total + sz))
      done < <(find /usr/lib /usr/share -xdev -type f -size -1000M -print0 2>/dev/null | sort -z)
      mv "$TREE.new" "$TREE"
    fi
  fi
  command -v xorriso >/dev/null || { echo "xorriso missing (apt-get install xorriso)" >&2; exit 1; }
  tsize=$(du -sb --apparent-size "$TREE" | cut -f1)
  find "$TREE" -type f -print0 | xargs -0 cat > /dev/null   # warm the page cache for both
  xd="$OUT/cmp-x.iso"; kd="$OUT/cmp-k.iso"
  x=$(time_cmd "$xd" bash -c 'xorriso -as mkisofs -quiet -R -J -o "$0" "$1" && sync "$0"' "$xd" "$TREE")
  k=$(time_cmd "$kd" "$KILN" convert -O iso "$TREE" "$kd")
  # Sequential write speed of this disk for the same byte count (the issue's yardstick).
  d=$(time_cmd "$kd" dd if=/dev/zero of="$kd" bs=4M count=$(( (tsize >> 22) + 1 )) conv=fsync status=none)
  for tool in "dd (seq write)" xorriso+sync kiln; do
    case $tool in kiln) r=$k ;; xorriso+sync) r=$x ;; *) r=$d ;; esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' iso-tree "$tool" "${r#fail }"; continue; fi
    read -r s rss o a <<<"$r"; tr=""; sr=""
    if [ "$tool" = kiln ] && [[ $x != fail* ]]; then
      read -r xs _ xo _ <<<"$x"
      tr=$(awk -v k="$s" -v q="$xs" 'BEGIN{printf "%.2f", k/q}')
      sr=$(awk -v k="$o" -v q="$xo" 'BEGIN{printf "%.3f", k/q}')
    fi
    awk -v t="$tool" -v s="$s" -v vs="$tsize" -v o="$o" -v a="$a" -v r="$rss" -v tr="$tr" -v sr="$sr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", "iso-tree", t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, sr}'
  done
  # The issue's target: kiln writes its output at >= 90% of dd's bytes per second.
  if [[ $k != fail* && $d != fail* ]]; then
    read -r ks _ ko _ <<<"$k"; read -r ds _ dbytes _ <<<"$d"
    awk -v ks="$ks" -v ko="$ko" -v ds="$ds" -v db="$dbytes" \
      'BEGIN{printf "# iso-tree: kiln writes at %.0f%% of dd'"'"'s sequential speed (target >= 90%%)\n", 100*(ko/ks)/(db/ds)}'
  fi
  rm -f "$xd" "$kd"
fi

# bundle: kiln bundle vs the reference ec2-bundle-image pipeline (see the header).
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",bundle,"* ]]; then
  command -v openssl >/dev/null || { echo "openssl missing (apt-get install openssl)" >&2; exit 1; }
  keys="$OUT/cmp-bundle-keys"; mkdir -p "$keys"
  for who in user ec2; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$keys/$who-key.pem" -out "$keys/$who-cert.pem" \
      -subj "/CN=kiln-bench-$who" -days 30 2>/dev/null
  done
  kd="$OUT/cmp-bundle-k"; rd="$OUT/cmp-bundle-r"; mkdir -p "$kd" "$rd"
  name=$(basename "$RAW")
  # The reference pipeline; $0 = parts dir, $1 = image dir, $2 = image name, $3 = sync or not.
  refpipe='set -o pipefail && cd "$0" && k=$(openssl rand -hex 16) && iv=$(openssl rand -hex 16) &&
    tar -c -h -S --owner 0 --group 0 -C "$1" "$2" | tee >(sha1sum > tar.sha1) | gzip -9 -n |
      openssl enc -e -aes-128-cbc -K "$k" -iv "$iv" | split -b 10M -d -a 2 - "$2.part." &&
    sha1sum "$2".part.* > parts.sha1 && if [ "$3" = sync ]; then sync "$2".part.*; fi'
  kcmd=("$KILN" bundle "$RAW" --user 111122223333 --cert "$keys/user-cert.pem"
        --privatekey "$keys/user-key.pem" --ec2-cert "$keys/ec2-cert.pem" -d "$kd")
  declare -A res=() size=()
  res[reference]=$(time_cmd "$rd" bash -c "$refpipe" "$rd" "$(dirname "$RAW")" "$name" nosync)
  size[reference]=$(cat "$rd/$name".part.* | wc -c)
  res[kiln -t unsafe]=$(time_cmd "$kd" "${kcmd[@]}" -t unsafe)
  size[kiln -t unsafe]=$(cat "$kd/$name".part.* | wc -c)
  res[reference+sync]=$(time_cmd "$rd" bash -c "$refpipe" "$rd" "$(dirname "$RAW")" "$name" sync)
  size[reference+sync]=$(cat "$rd/$name".part.* | wc -c)
  res[kiln]=$(time_cmd "$kd" "${kcmd[@]}")
  size[kiln]=$(cat "$kd/$name".part.* | wc -c)
  for tool in reference "kiln -t unsafe" reference+sync kiln; do
    r=${res[$tool]}
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' bundle "$tool" "${r#fail }"; continue; fi
    read -r s rss _ _ <<<"$r"; o=${size[$tool]}
    pair=""; tr=""; sr=""
    case $tool in "kiln -t unsafe") pair=reference ;; kiln) pair=reference+sync ;; esac
    if [ -n "$pair" ] && [[ ${res[$pair]} != fail* ]]; then
      read -r ps _ _ _ <<<"${res[$pair]}"
      tr=$(awk -v k="$s" -v q="$ps" 'BEGIN{printf "%.2f", k/q}')
      sr=$(awk -v k="$o" -v q="${size[$pair]}" 'BEGIN{printf "%.3f", k/q}')
    fi
    awk -v t="$tool" -v s="$s" -v vs="$VSIZE" -v o="$o" -v r="$rss" -v tr="$tr" -v sr="$sr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9s | %7.1f | %10s | %10s |\n", "bundle", t, s, vs/s/1e6, o/1048576, "", r/1024, tr, sr}'
  done
  unset res size
  rm -rf "$kd" "$rd" "$keys"
fi

# triplet: the Glance triplet from a partitioned disk (see the header); both synced.
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",triplet,"* ]]; then
  for t in sgdisk debugfs; do
    command -v $t >/dev/null || { echo "$t missing (apt-get install gdisk e2fsprogs)" >&2; exit 1; }
  done
  tdir="$OUT/cmp-triplet"; rm -rf "$tdir"; mkdir -p "$tdir/out"
  cp --sparse=always "$RAW" "$tdir/root.fs"
  head -c $((12 << 20)) /dev/urandom > "$tdir/kernel"; head -c $((60 << 20)) /dev/urandom > "$tdir/initrd"
  printf '%s\n' "mkdir /boot" "write $tdir/kernel /boot/vmlinuz-6.1.0-bench" \
    "symlink /boot/vmlinuz vmlinuz-6.1.0-bench" "write $tdir/initrd /boot/initrd.img" > "$tdir/cmds"
  debugfs -w -f "$tdir/cmds" "$tdir/root.fs" > /dev/null 2>&1
  sectors=$((VSIZE / 512))
  truncate -s $((VSIZE + (2 << 20))) "$tdir/disk.img"
  sgdisk -n "1:2048:+$sectors" -t 1:8300 "$tdir/disk.img" > /dev/null 2>&1
  dd if="$tdir/root.fs" of="$tdir/disk.img" bs=1M seek=1 conv=sparse,notrunc status=none
  rm -f "$tdir/root.fs" "$tdir/kernel" "$tdir/initrd"
  printf '%s\n' "name: t" "disks:" "  - name: root" "    source: { file: $tdir/disk.img }" "outputs:" \
    "  - { disk_format: ami, container_format: ami, kernel: /boot/vmlinuz, ramdisk: /boot/initrd.img }" > "$tdir/t.yaml"
  cat "$tdir/disk.img" > /dev/null
  # $3: `sums` also hashes the three files as kiln does for SHA256SUMS (equal work).
  refpipe='cd "$0" && dd if="$1" of=t.ami bs=1M skip=1 count="$2" iflag=count_bytes conv=sparse status=none &&
    debugfs -R "cat /boot/vmlinuz-6.1.0-bench" t.ami > t.aki 2>/dev/null &&
    debugfs -R "cat /boot/initrd.img" t.ami > t.ari 2>/dev/null &&
    { [ "$3" != sums ] || sha256sum t.ami t.aki t.ari > SUMS; } && sync t.ami t.aki t.ari'
  declare -A res=()
  res[dd+debugfs]=$(time_cmd "$tdir/out" bash -c "$refpipe" "$tdir/out" "$tdir/disk.img" "$VSIZE" nosums)
  [ "$(stat -c %s "$tdir/out/t.ari")" = $((60 << 20)) ] || res[dd+debugfs]="fail the reference did not extract the initrd"
  res[dd+debugfs+sha256]=$(time_cmd "$tdir/out" bash -c "$refpipe" "$tdir/out" "$tdir/disk.img" "$VSIZE" sums)
  res[kiln build]=$(time_cmd "$tdir/out" "$KILN" build --quiet "$tdir/t.yaml" -o "$tdir/out")
  for tool in dd+debugfs dd+debugfs+sha256 "kiln build"; do
    r=${res[$tool]}
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' triplet "$tool" "${r#fail }"; continue; fi
    read -r s rss _ _ <<<"$r"; tr=""
    # kiln's ratio is against the issue's yardstick (dd+debugfs); the +sha256 line's ratio
    # is kiln against it, since kiln also hashes every file for SHA256SUMS.
    case $tool in
      "kiln build") pair=dd+debugfs ;;
      dd+debugfs+sha256) pair="kiln build" ;;
      *) pair="" ;;
    esac
    if [ -n "$pair" ] && [[ ${res[$pair]} != fail* ]]; then
      read -r ps _ _ _ <<<"${res[$pair]}"
      if [ "$pair" = "kiln build" ]; then tr=$(awk -v k="$ps" -v q="$s" 'BEGIN{printf "%.2f", k/q}')
      else tr=$(awk -v k="$s" -v q="$ps" 'BEGIN{printf "%.2f", k/q}'); fi
    fi
    awk -v t="$tool" -v s="$s" -v vs="$VSIZE" -v r="$rss" -v tr="$tr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9s | %9s | %7.1f | %10s | %10s |\n", "triplet (ami+aki+ari)", t, s, vs/s/1e6, "", "", r/1024, tr, ""}'
  done
  unset res
  rm -rf "$tdir"
fi

# ova-disk: kiln ova --disk vs the streamOptimized convert it wraps (see the header).
if [ -z "$ONLY" ] || [[ ",$ONLY," == *",ova-disk,"* ]]; then
  odir="$OUT/cmp-ova-disk"; rm -rf "$odir"; mkdir -p "$odir"
  c=$(time_cmd "$odir/c.vmdk" "$KILN" convert -f raw -O vmdk -o subformat=streamOptimized "$RAW" "$odir/c.vmdk")
  o=$(time_cmd "$odir/o.ova" "$KILN" ova --quiet --force --disk "$RAW" -o "$odir/o.ova")
  for tool in convert ova; do
    case $tool in convert) r=$c; t="kiln convert" ;; *) r=$o; t="kiln ova" ;; esac
    if [[ $r == fail* ]]; then printf '| %-34s | %-14s | %s |\n' ova-disk "$t" "${r#fail }"; continue; fi
    read -r s rss out al <<<"$r"; tr=""; sr=""
    if [ $tool = ova ] && [[ $c != fail* ]]; then
      read -r cs _ co _ <<<"$c"
      tr=$(awk -v k="$s" -v q="$cs" 'BEGIN{printf "%.2f", k/q}')
      sr=$(awk -v k="$out" -v q="$co" 'BEGIN{printf "%.3f", k/q}')
    fi
    awk -v t="$t" -v s="$s" -v vs="$VSIZE" -v o="$out" -v a="$al" -v r="$rss" -v tr="$tr" -v sr="$sr" \
      'BEGIN{printf "| %-34s | %-14s | %8.2f | %10.0f | %9.1f | %9.1f | %7.1f | %10s | %10s |\n", "ova-disk (OVA of one image)", t, s, vs/s/1e6, o/1048576, a/1048576, r/1024, tr, sr}'
  done
  rm -rf "$odir"
fi

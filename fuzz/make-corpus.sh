#!/usr/bin/env bash
# Makes the seed corpora in fuzz/seeds/<target>/ with kiln and qemu-img (and genisoimage
# for one ISO). Seeds larger than 256 KiB are stored gzip'ed (`.gz`): fuzz/run.sh unpacks
# them into the working corpus, and tests/fuzz_replay.rs reads them either way. The
# sources are fixed bytes; qemu-img, genisoimage and openssl add timestamps, ids and keys
# of their own, so those bytes differ from run to run.
#
#   fuzz/make-corpus.sh   # needs ../target/debug/kiln (cargo build), qemu-img, genisoimage,
#                         # sfdisk, mkfs.ext4 and openssl
set -euo pipefail
cd "$(dirname "$0")"
KILN=${KILN:-$(cd .. && pwd)/target/debug/kiln}
for tool in qemu-img genisoimage python3 sfdisk mkfs.ext4 openssl "$KILN"; do
    command -v "$tool" >/dev/null || { echo "make-corpus.sh: $tool not found" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
targets="qcow2 vmdk vhd vhdx vdi iso probe spec_load tar ovf ec2_manifest partitions ext4 unpack"
rm -rf seeds
for t in $targets; do mkdir -p "seeds/$t"; done

# put FILE TARGET: a seed, gzip'ed when it is large.
put() {
    local name
    name=$(basename "$1")
    if [ "$(stat -c %s "$1")" -gt 262144 ]; then
        gzip -9n -c "$1" > "seeds/$2/$name.gz"
    else
        cp "$1" "seeds/$2/$name"
    fi
}
# conv FMT OUT [OPTS...]: qemu-img convert of the source.
conv() {
    local fmt=$1 out=$2
    shift 2
    qemu-img convert -q -f raw -O "$fmt" "$@" "$tmp/src.raw" "$tmp/$out"
}
# kconv FMT OUT [OPTS...]: kiln convert of the source.
kconv() {
    local fmt=$1 out=$2
    shift 2
    "$KILN" convert -f raw -O "$fmt" "$@" "$tmp/src.raw" "$tmp/$out"
}

# A 256 KiB source: text at the start, a block in the middle, a tail; zeros between.
python3 - "$tmp/src.raw" <<'EOF'
import sys
b = bytearray(256 * 1024)
text = b"kiln fuzz seed " * 300
b[: len(text)] = text
b[128 * 1024 : 128 * 1024 + 4096] = bytes(range(256)) * 16
b[-16:] = b"the last bytes.."
open(sys.argv[1], "wb").write(b)
EOF

conv qcow2 q-4k.qcow2 -o cluster_size=4096
conv qcow2 q-512.qcow2 -o cluster_size=512,compat=0.10
conv qcow2 q-compressed.qcow2 -c -o cluster_size=4096
conv qcow2 q-prealloc.qcow2 -o cluster_size=4096,preallocation=metadata
qemu-img create -q -f qcow2 -o cluster_size=4096 -b q-4k.qcow2 -F qcow2 "$tmp/q-backing.qcow2"
kconv qcow2 q-kiln.qcow2 -o cluster_size=4096
for f in q-4k q-512 q-compressed q-prealloc q-backing q-kiln; do put "$tmp/$f.qcow2" qcow2; done

conv vmdk v-sparse.vmdk
conv vmdk v-qemu-stream.vmdk -o subformat=streamOptimized
conv vmdk v-flat.vmdk -o subformat=monolithicFlat
conv vmdk v-2gb.vmdk -o subformat=twoGbMaxExtentSparse
kconv vmdk v-kiln-stream.vmdk -o subformat=streamOptimized
for f in v-sparse v-qemu-stream v-flat v-2gb v-kiln-stream; do put "$tmp/$f.vmdk" vmdk; done

kconv vhd h-dynamic.vhd -o block_size=512K,force_size=on
conv vpc h-fixed.vhd -o subformat=fixed,force_size=on
conv vpc h-qemu.vhd
for f in h-dynamic h-fixed h-qemu; do put "$tmp/$f.vhd" vhd; done

conv vhdx x-qemu.vhdx
kconv vhdx x-kiln.vhdx
for f in x-qemu x-kiln; do put "$tmp/$f.vhdx" vhdx; done

conv vdi d-dynamic.vdi
conv vdi d-static.vdi -o static=on
kconv vdi d-kiln.vdi
for f in d-dynamic d-static d-kiln; do put "$tmp/$f.vdi" vdi; done

mkdir -p "$tmp/tree/dir"
echo hello > "$tmp/tree/hello.txt"
echo deeper > "$tmp/tree/dir/deeper.txt"
genisoimage -quiet -R -J -V SEED -o "$tmp/i-genisoimage.iso" "$tmp/tree"
"$KILN" convert -O iso "$tmp/tree" "$tmp/i-kiln.iso"
for f in i-genisoimage i-kiln; do put "$tmp/$f.iso" iso; done

# The probe sees only the first 64 KiB of each format, and two things that are not disks.
for f in q-4k.qcow2 v-sparse.vmdk h-qemu.vhd x-qemu.vhdx d-dynamic.vdi i-genisoimage.iso; do
    head -c 65536 "$tmp/$f" > "seeds/probe/${f%.*}-head.${f##*.}"
done
python3 - seeds/probe/mbr.raw <<'EOF'
import sys
b = bytearray(1024)
b[446:462] = bytes([0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 0xFF, 0x03, 0, 0])
b[510:512] = b"\x55\xaa"
open(sys.argv[1], "wb").write(b)
EOF

cp ../templates/*.yaml seeds/spec_load/
cp ../examples/minimal.yaml seeds/spec_load/example-minimal.yaml
printf 'name: x\ndisks:\n  - name: root\n    source: { blank: true }\n    size: 1EiB\noutputs:\n  - { disk_format: vhd, container_format: bare }\n' \
    > seeds/spec_load/too-large.yaml
printf 'name: x\ndisks: [ { name: r, source: { file: ../../etc/passwd } } ]\noutputs: [ { disk_format: raw, container_format: bare } ]\ncloud_init: { user_data: { a: &a [1, 2], b: *a } }\n' \
    > seeds/spec_load/escape-and-alias.yaml

# Packages: a one-disk OVA kiln builds, whole and cut after its first members.
cat > "$tmp/app.yaml" <<'EOF'
name: app
disks:
  - name: root
    source: { file: src.raw }
outputs:
  - { disk_format: vmdk, container_format: ova }
EOF
(cd "$tmp" && "$KILN" build -q -o out app.yaml >/dev/null)
cp "$tmp/out/app.ova" seeds/tar/app.ova
head -c 4096 "$tmp/out/app.ova" > seeds/tar/app-cut.ova
cp seeds/tar/app-cut.ova seeds/probe/ova-head.tar

# OVF descriptors: the .ovf members of kiln-built packages for both targets, one with
# cloud-init data in OVF properties.
cat > "$tmp/vbox.yaml" <<'SPEC'
name: vbox
disks:
  - name: root
    source: { file: src.raw }
  - name: data
    source: { blank: true }
    size: 1MiB
outputs:
  - { disk_format: vmdk, container_format: ova, target: virtualbox }
SPEC
cat > "$tmp/props.yaml" <<'SPEC'
name: props
disks:
  - name: root
    source: { file: src.raw }
cloud_init:
  user_data: { hostname: seed }
  deliver: [ovf-properties]
outputs:
  - { disk_format: vmdk, container_format: ova }
SPEC
for spec in vbox props; do
    (cd "$tmp" && "$KILN" build -q -o out "$spec.yaml" >/dev/null)
    tar -xOf "$tmp/out/$spec.ova" "$spec.ovf" > "seeds/ovf/$spec.ovf"
done
tar -xOf "$tmp/out/app.ova" app.ovf > seeds/ovf/app.ovf

# An EC2 bundle's manifest, made with throwaway keys.
for who in user ec2; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$who" \
        -keyout "$tmp/$who-key.pem" -out "$tmp/$who-cert.pem" 2>/dev/null
done
"$KILN" bundle "$tmp/src.raw" -u 123456789012 -c "$tmp/user-cert.pem" \
    -k "$tmp/user-key.pem" --ec2-cert "$tmp/ec2-cert.pem" -d "$tmp/bundle" >/dev/null
cp "$tmp"/bundle/*.manifest.xml seeds/ec2_manifest/

# Partition tables: MBR and GPT on a 1 MiB disk, and an ISO's head (no table).
truncate -s 1M "$tmp/dos.raw" "$tmp/gpt.raw"
printf 'label: dos\nstart=64, size=256, type=83\n' | sfdisk -q "$tmp/dos.raw"
printf 'label: gpt\nstart=64, size=256\n' | sfdisk -q "$tmp/gpt.raw"
put "$tmp/dos.raw" partitions
put "$tmp/gpt.raw" partitions
head -c 65536 "$tmp/i-kiln.iso" > seeds/partitions/iso-head.iso

# ext4: a 1 MiB file system holding the ISO's two-file tree.
truncate -s 1M "$tmp/fs.ext4"
mkfs.ext4 -q -F -b 1024 -O ^has_journal -d "$tmp/tree" -L seed "$tmp/fs.ext4"
put "$tmp/fs.ext4" ext4

# Compressed sources (`unpack`): a small raw image with data and zero runs, and a qcow2 of
# it, compressed by each tool; tar archives of them, plain and compressed. Gzip'ed seeds are
# named `-gz`, not `.gz` (run.sh and the replay would unpack them first).
unpack_seeds() {
    local u="$1/unpack" out="$2"
    mkdir -p "$u"
    seq 1 12000 > "$u/disk.raw"
    truncate -s 128K "$u/disk.raw"
    printf 'kiln fuzz seed' >> "$u/disk.raw"
    truncate -s 192K "$u/disk.raw"
    qemu-img convert -q -f raw -O qcow2 "$u/disk.raw" "$u/disk.qcow2"
    xz -T1 -c "$u/disk.raw" > "$out/raw.xz"
    zstd -q -c "$u/disk.raw" > "$out/raw.zst"
    gzip -9n -c "$u/disk.raw" > "$out/raw-gz"
    bzip2 -c "$u/disk.raw" > "$out/raw.bz2"
    xz -T1 -c "$u/disk.qcow2" > "$out/qcow2.xz"
    zstd -q -c "$u/disk.qcow2" > "$out/qcow2.zst"
    (cd "$u" && tar --format=gnu --owner=0 --group=0 --mtime=@0 -cf disk.tar disk.raw)
    (cd "$u" && cp disk.raw other.img && tar --format=ustar --owner=0 --group=0 --mtime=@0 \
        -cf two.tar disk.raw other.img)
    cp "$u/disk.tar" "$out/disk.tar"
    xz -T1 -c "$u/disk.tar" > "$out/disk.tar.xz"
    zstd -q -c "$u/two.tar" > "$out/two.tar.zst"
    gzip -9n -c "$u/disk.tar" > "$out/disk.tar-gz"
    # A truncated stream and a concatenation of two.
    head -c 2000 "$out/raw.xz" > "$out/raw-cut.xz"
    cat "$out/raw.zst" "$out/raw.zst" > "$out/raw-twice.zst"
}
for tool in xz zstd gzip bzip2 tar; do
    command -v "$tool" >/dev/null || { echo "make-corpus.sh: $tool not found" >&2; exit 1; }
done
unpack_seeds "$tmp" seeds/unpack

du -sh seeds

#!/usr/bin/env bash
# Proves the oracles themselves: inputs made by the reference tools (qemu-img, xorriso,
# genisoimage, mkfs.vfat + mtools, tar, openssl) must pass, and copies broken on purpose
# must fail, naming the check that should catch them. Nothing here is made by kiln.
#
#   bash tests/oracles/selftest.sh [--keep]
set -uo pipefail
O="$(cd "$(dirname "$0")" && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"
work="$(mktemp -d "${TMPDIR:-/tmp}/kiln-selftest.XXXXXX")"
if [ "${1:-}" != --keep ]; then trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT; fi
cd "$work" || exit 1
passed=0
failed=0

ok() { # NAME COMMAND... : the oracle must accept
  local out
  if out="$("${@:2}" 2>&1)"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "WRONG: $1 should pass:"
    tail -3 <<<"$out" | sed 's/^/    /'
  fi
}

bad() { # NAME CHECK COMMAND... : the oracle must refuse, and CHECK must be among the failures
  local out rc verdict
  out="$("${@:3}" 2>&1)"
  rc=$?
  verdict="$(tail -1 <<<"$out")"
  if [ "$rc" = 1 ] && grep -q -- "$2" <<<"$verdict"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "WRONG: $1 should fail $2 (exit $rc): $verdict"
  fi
}

flip() { # FILE OFFSET : inverts one byte
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

poke() { # FILE OFFSET HEXBYTES : overwrites bytes
  printf "$(sed 's/../\\x&/g' <<<"$3")" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ---- disk images -------------------------------------------------------------------------
truncate -s 64M src.raw
for i in 1 7 20 41 63; do
  dd if=/dev/urandom of=src.raw bs=64K count=$((i % 5 + 1)) seek=$((i * 16)) conv=notrunc \
    status=none
done
printf tail | dd of=src.raw bs=1 seek=$((64 * 1024 * 1024 - 4)) conv=notrunc status=none
Q() { qemu-img convert -q -f raw "$@"; }
Q -O qcow2 src.raw a.qcow2
Q -O qcow2 -c src.raw c.qcow2
Q -O qcow2 -o preallocation=metadata src.raw m.qcow2
Q -O vmdk src.raw sparse.vmdk
Q -O vmdk -o subformat=monolithicFlat src.raw flat.vmdk
Q -O vmdk -o subformat=streamOptimized src.raw stream.vmdk
Q -O vpc -o force_size=on src.raw dyn.vhd
Q -O vpc -o subformat=fixed,force_size=on src.raw fixed.vhd
Q -O vhdx src.raw dyn.vhdx
Q -O vhdx -o subformat=fixed src.raw fixed.vhdx
Q -O vdi src.raw dyn.vdi
Q -O vdi -o static=on src.raw static.vdi
cp src.raw gpt.raw
sgdisk -q -n 1:2048:+16M -t 1:8300 gpt.raw >/dev/null
mkdir -p tree/sub && echo hello >tree/a.txt && head -c 300000 /dev/urandom >tree/sub/b.bin
ln -s a.txt tree/link
xorriso -as mkisofs -quiet -R -J -V KILN_ST -o t.iso tree 2>/dev/null

I="$O/check-image"
ok raw "$I" --format raw src.raw --source src.raw
ok raw-gpt "$I" --format raw gpt.raw
ok qcow2 "$I" --format qcow2 a.qcow2 --source src.raw
ok qcow2-compressed "$I" --format qcow2 c.qcow2 --source src.raw
ok qcow2-metadata "$I" --format qcow2 --subformat metadata m.qcow2 --source src.raw
ok vmdk-sparse "$I" --format vmdk sparse.vmdk --source src.raw
ok vmdk-flat "$I" --format vmdk --subformat monolithicFlat flat.vmdk --source src.raw
ok vhd-dynamic "$I" --format vhd dyn.vhd --source src.raw
ok vhd-fixed "$I" --format vpc --subformat fixed fixed.vhd --source src.raw
ok vhdx-dynamic "$I" --format vhdx dyn.vhdx --source src.raw
ok vhdx-fixed "$I" --format vhdx --subformat fixed fixed.vhdx --source src.raw
ok vdi-dynamic "$I" --format vdi dyn.vdi --source src.raw
ok vdi-static "$I" --format vdi --subformat static static.vdi --source src.raw
ok iso "$I" --format iso t.iso --source tree --volume-label KILN_ST
# qemu's streamOptimized layout (grain directory in front, no markers) is what 7-Zip refuses.
bad qemu-stream-vmdk 7z-test "$I" --format vmdk --subformat streamOptimized stream.vmdk \
  --source src.raw

cp a.qcow2 x1.qcow2 && flip x1.qcow2 0
bad qcow2-magic qemu-info "$I" --format qcow2 x1.qcow2 --source src.raw
cp a.qcow2 x2.qcow2 && poke x2.qcow2 79 01
bad qcow2-dirty-bit structure "$I" --format qcow2 x2.qcow2 --source src.raw
cp a.qcow2 x3.qcow2 && truncate -s 400K x3.qcow2
bad qcow2-truncated qemu-compare "$I" --format qcow2 x3.qcow2 --source src.raw
cp a.qcow2 x4.qcow2 && poke x4.qcow2 $((0x20000 + 1)) 05
bad qcow2-refcount qemu-check "$I" --format qcow2 x4.qcow2 --source src.raw
bad wrong-size qemu-info "$I" --format qcow2 a.qcow2 --virtual-size 1048576
cp sparse.vmdk x5.vmdk && flip x5.vmdk $(($(stat -c %s x5.vmdk) - 100))
bad vmdk-data-byte qemu-compare "$I" --format vmdk x5.vmdk --source src.raw
cp dyn.vhd x6.vhd && flip x6.vhd 70
bad vhd-footer-checksum structure "$I" --format vhd x6.vhd --source src.raw
cp fixed.vhd x7.vhd && flip x7.vhd $((65536 * 16 + 5))
bad vhd-fixed-data 7z-compare "$I" --format vhd --subformat fixed x7.vhd --source src.raw
cp dyn.vhdx x8.vhdx && flip x8.vhdx $((64 * 1024 + 4))
bad vhdx-header-checksum 7z-test "$I" --format vhdx x8.vhdx --source src.raw
cp dyn.vdi x9.vdi && poke x9.vdi $((0x4c)) 02
bad vdi-wrong-type structure "$I" --format vdi x9.vdi --source src.raw
cp t.iso x10.iso && poke x10.iso $((16 * 2048 + 1)) 58
bad iso-pvd structure "$I" --format iso x10.iso
echo changed >tree/a.txt
bad iso-tree-differs iso-compare "$I" --format iso t.iso --source tree
bad iso-label iso-isoinfo "$I" --format iso t.iso --volume-label OTHER
bad iso-no-joliet-wanted iso-isoinfo "$I" --format iso t.iso --joliet forbid

# ---- OVF packages (a hand-written descriptor around qemu's VMDK) -------------------------
mkdir ova && cd ova || exit 1
cp ../stream.vmdk app-disk1.vmdk
vmdk_size=$(stat -c %s app-disk1.vmdk)
descriptor() {
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="app-disk1.vmdk" ovf:id="file1" ovf:size="$vmdk_size"/></References>
  <DiskSection><Info>Disks</Info>
    <Disk ovf:capacity="64" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="d1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>Networks</Info><Network ovf:name="VM Network"><Description>net</Description></Network></NetworkSection>
  <VirtualSystem ovf:id="app"><Info>A VM</Info>
    <OperatingSystemSection ovf:id="101"><Info>OS</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>Hardware</Info>
      <System><vssd:ElementName>hw</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>${FAMILY:-vmx-13}</vssd:VirtualSystemType></System>
      <Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>${MEMUNITS:-byte * 2^20}</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>scsi</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>disk</rasd:ElementName><rasd:HostResource>ovf:/disk/${DISK:-d1}</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType>${EXTRA:-}</Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>nic</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
EOF
}
package() { # NAME [tar options] : NAME.ova from app.ovf (renamed), a fresh manifest, the disk
  local name=$1
  shift
  mkdir -p "p-$name" && cp app-disk1.vmdk "p-$name/"
  cp app.ovf "p-$name/$name.ovf"
  (cd "p-$name" && openssl dgst -sha256 -r "$name.ovf" app-disk1.vmdk |
    sed 's/^\([0-9a-f]*\) \*\(.*\)$/SHA256(\2)= \1/' >"$name.mf" &&
    tar --format=ustar --owner=0 --group=0 "$@" -cf "../$name.ova" "$name.ovf" "$name.mf" \
      app-disk1.vmdk)
}
C="$O/check-ova"
descriptor >app.ovf && package good
ok ova-generic "$C" --strict good.ova
ok ova-vmware "$C" --strict --profile vmware good.ova
ok ova-virtualbox "$C" --strict --profile virtualbox good.ova
ok ovf-directory "$C" --strict p-good/good.ovf
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=kiln \
  2>/dev/null
(cd p-good && { openssl dgst -sha256 -sign ../key.pem good.mf | od -An -tx1 | tr -d ' \n' |
  sed 's/^/SHA256(good.mf)= /'; echo; cat ../cert.pem; } >good.cert)
ok ovf-signed "$C" --strict p-good/good.ovf
sed -i '1s/= 0/= 1/;t;1s/= ./= 0/' p-good/good.cert
bad ovf-bad-signature cert "$C" p-good/good.ovf
(cd p-good && tar --format=ustar -cf ../order.ova good.ovf app-disk1.vmdk good.mf)
bad ova-order ova.order "$C" order.ova
(cd p-good && tar --format=pax -cf ../pax.ova good.ovf good.mf app-disk1.vmdk)
bad ova-pax tar.member-type "$C" pax.ova
(cd p-good && sed 's/= ./= 0/' good.mf >x && mv x good.mf && tar --format=ustar -cf ../digest.ova \
  good.ovf good.mf app-disk1.vmdk)
bad ova-digest mf.digest "$C" digest.ova
gzip -c good.ova >gz.ova
bad ova-gzip tar.compressed "$C" gz.ova
sed 's#<rasd:ElementName>cpu</rasd:ElementName>##; s#<rasd:ResourceType>3</rasd:ResourceType>#<rasd:ResourceType>3</rasd:ResourceType><rasd:ElementName>cpu</rasd:ElementName>#' \
  app.ovf >x && mv x app.ovf && package order2
bad cim-property-order schema "$C" order2.ova
DISK=nope descriptor >app.ovf && package hostres
bad unknown-disk hw.host-resource "$C" hostres.ova
EXTRA='<vmw:Foo/><rasd:VirtualQuantity>1</rasd:VirtualQuantity>' descriptor >app.ovf && package vendor
bad vendor-element-first hw.order "$C" vendor.ova
FAMILY=virtualbox-2.2 descriptor >app.ovf && package family
bad vmware-family vmware.hardware-family "$C" --profile vmware family.ova
MEMUNITS='byte * 10^6' descriptor >app.ovf && package units
bad virtualbox-memory-units virtualbox.memory-units "$C" --profile virtualbox units.ova
cd .. || exit 1

# ---- cloud-init NoCloud seeds ------------------------------------------------------------
mkdir seed && cd seed || exit 1
printf '#cloud-config\npackages: [nginx]\n' >user-data
printf 'instance-id: st-1\nlocal-hostname: box\n' >meta-data
printf 'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n' >network-config
iso() { # OUT LABEL [genisoimage options] FILES...
  local out=$1 label=$2
  shift 2
  genisoimage -quiet -o "$out" -V "$label" "$@" 2>/dev/null
}
fat() { # OUT LABEL FILES...
  local out=$1 label=$2
  shift 2
  rm -f "$out" && mkfs.vfat -C -n "$label" "$out" 2048 >/dev/null 2>&1 && mcopy -i "$out" "$@" ::/
}
S="$O/check-seed"
iso good.iso cidata -J -R user-data meta-data network-config
ok seed-iso "$S" --expect-instance-id st-1 --expect-hostname box good.iso
fat good.img CIDATA user-data meta-data
ok seed-fat "$S" good.img
iso label.iso CDATA -J -R user-data meta-data
bad seed-label blkid "$S" label.iso
fat label.img CiData user-data meta-data
bad seed-fat-label nocloud-datasource "$S" label.img
iso nometa.iso cidata -J -R user-data
bad seed-no-meta-data seed-files "$S" nometa.iso
iso norr.iso cidata -J user-data meta-data
bad seed-no-rock-ridge iso-extensions "$S" norr.iso
bad seed-wrong-instance meta-data "$S" --expect-instance-id other good.iso
bad seed-wrong-hostname hostname "$S" --expect-hostname other good.iso
mkdir b && printf '#cloud-config\npackages: [a\n' >b/user-data && printf 'local-hostname: x\n' >b/meta-data
iso yaml.iso cidata -J -R b/user-data meta-data
bad seed-bad-yaml user-data "$S" yaml.iso
iso iid.iso cidata -J -R user-data b/meta-data
bad seed-no-instance-id meta-data "$S" iid.iso
printf 'version: 3\n' >b/network-config
iso net.iso cidata -J -R user-data meta-data b/network-config
bad seed-network-v3 network-config "$S" net.iso
printf 'packages: [nginx]\n' >b/user-data
fat plain.img CIDATA b/user-data meta-data
bad seed-untyped-user-data user-data "$S" plain.img
head -c 1M /dev/zero >zero.img
bad seed-zeros detect "$S" zero.img
cd .. || exit 1

echo "selftest: $passed passed, $failed failed"
[ "$failed" = 0 ]

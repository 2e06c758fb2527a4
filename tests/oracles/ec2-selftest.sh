#!/usr/bin/env bash
# Proves the EC2 bundle oracles: bundles written by ec2-bundle-ref must unbundle with
# ec2-unbundle to the very bytes they were made from, the reference bundle must be what the
# format says (checked with openssl, gzip and tar directly, not through ec2-unbundle), and
# bundles broken on purpose must fail with the check that should catch them, leaving nothing
# behind. Nothing here is made by kiln.
#
#   bash tests/oracles/ec2-selftest.sh [--keep]
set -uo pipefail
O="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/kiln-ec2-selftest.XXXXXX")"
if [ "${1:-}" != --keep ]; then trap 'rm -rf "$work"' EXIT; else echo "work: $work"; fi
cd "$work" || exit 1
passed=0
failed=0
KEY=00112233445566778899aabbccddeeff
IV=0f0e0d0c0b0a09080706050403020100

pass() { passed=$((passed + 1)); }
wrong() {
  failed=$((failed + 1))
  echo "WRONG: $*"
}

check() { # NAME COMMAND... : a plain command that must succeed
  local out
  if out="$("${@:2}" 2>&1)"; then pass; else wrong "$1: $(tail -2 <<<"$out")"; fi
}

U() { "$O/ec2-unbundle" --strict-style "$@"; }

roundtrip() { # NAME IMAGE MANIFEST KEY [GREP] : unbundles into out-NAME, then cmp
  local out
  if ! out="$(U --manifest "$3" --privatekey "$4" --cert user-cert.pem --destination "out-$1" \
    2>&1)"; then
    wrong "$1 should unbundle: $(tail -1 <<<"$out")"
  elif ! cmp -s "$2" "out-$1/$(basename "$3" .manifest.xml)"; then
    wrong "$1: the unbundled image differs from $2"
  elif [ -n "${5:-}" ] && ! grep -q -- "$5" <<<"$out"; then
    wrong "$1: the report does not say '$5'"
  else
    pass
  fi
}

bad() { # NAME CHECK MANIFEST [options] : must fail CHECK, exit 1, and write nothing
  local out rc verdict dest="x-$1"
  out="$(U --manifest "$3" --destination "$dest" "${@:4}" 2>&1)"
  rc=$?
  verdict="$(tail -1 <<<"$out")"
  if [ "$rc" != 1 ] || ! grep -q -- ": $2: " <<<"$verdict"; then
    wrong "$1 should fail $2 (exit $rc): $verdict"
  elif [ -d "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
    wrong "$1 failed but left $(ls -A "$dest") behind"
  else
    pass
  fi
}

unhex() { # hex on stdin to bytes on stdout
  # shellcheck disable=SC2059 # the format is the bytes, as \xHH escapes
  printf "$(sed 's/../\\x&/g')"
}

copy() { # FROM TO : a copy of a bundle directory to break
  rm -rf "$2" && cp -r "$1" "$2"
}

resign() { # MANIFEST : signs the manifest again with the user's key after an edit
  local region sig
  region="$(grep -o '<machine_configuration>.*</machine_configuration>' "$1")"
  region+="$(grep -o '<image>.*</image>' "$1")"
  sig="$(printf '%s' "$region" | openssl dgst -sha1 -sign user-key.pem | od -An -tx1 |
    tr -d ' \n')"
  sed -i "s#<signature>[0-9a-f]*</signature>#<signature>$sig</signature>#" "$1"
}

for who in user ec2 other; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$who-key.pem" -out "$who-cert.pem" \
    -subj "/CN=kiln-ec2-selftest-$who" -days 30 2>/dev/null
done
B() { # IMAGE DEST [options] : a reference bundle
  "$O/ec2-bundle-ref" --image "$1" --destination "$2" --privatekey user-key.pem \
    --cert user-cert.pem --ec2cert ec2-cert.pem --user 111122223333 "${@:3}" >/dev/null
}

# ---- images --------------------------------------------------------------------------------
truncate -s 64M sparse.img
for i in 3 17 40 63; do
  head -c $((i * 3000)) /dev/urandom | dd of=sparse.img bs=1M seek="$i" conv=notrunc status=none
done
head -c $((25 << 20)) /dev/urandom >random.img
head -c $((95 << 20)) /dev/urandom >ten.img
head -c 3000001 /dev/urandom >vmlinuz

# ---- round trips ---------------------------------------------------------------------------
B sparse.img sb --block-device-mapping root=/dev/sda1,ami=sda1,ephemeral0=sdb \
  --kernel aki-1a2b3c4d --ramdisk ari-4d3c2b1a --product-codes ABC123
roundtrip sparse sparse.img sb/sparse.img.manifest.xml user-key.pem "GNU sparse"
roundtrip sparse-ec2-key sparse.img sb/sparse.img.manifest.xml ec2-key.pem
check sparse-stays-sparse test "$(stat -c %b out-sparse/sparse.img)" -lt $((20 << 10))
B random.img rb
check three-parts test "$(ls rb)" = "$(printf '%s\n' random.img.manifest.xml \
  random.img.part.{0,1,2})"
roundtrip multi-part random.img rb/random.img.manifest.xml user-key.pem "regular file"
B ten.img tb
ten=(tb/ten.img.part.0[0-9])
check ten-parts-two-digits test "${#ten[@]}" = 10 -a "$(find tb -type f | wc -l)" = 11
roundtrip ten-parts ten.img tb/ten.img.manifest.xml ec2-key.pem
B vmlinuz kb --type kernel --prefix kernel.img
check kernel-name grep -q '<type>kernel</type><kernel_name>kernel.img</kernel_name>' \
  kb/kernel.img.manifest.xml
check kernel-plain-mc grep -q \
  '<machine_configuration><architecture>x86_64</architecture></machine_configuration>' \
  kb/kernel.img.manifest.xml
roundtrip kernel vmlinuz kb/kernel.img.manifest.xml user-key.pem

# ---- the reference bundle, checked without ec2-unbundle -------------------------------------
B random.img f1 --key "$KEY" --iv "$IV"
B random.img f2 --key "$KEY" --iv "$IV"
for p in 0 1 2; do
  check "fixed-key-part-$p-reproducible" cmp f1/random.img.part.$p f2/random.img.part.$p
done
check openssl-gzip-tar-read-parts sh -c "cat f1/random.img.part.* |
  openssl enc -d -aes-128-cbc -K $KEY -iv $IV | gzip -dc | tar -xOf - random.img | cmp - random.img"
check tar-owner-root sh -c "cat f1/random.img.part.* |
  openssl enc -d -aes-128-cbc -K $KEY -iv $IV | gzip -dc | tar -tvf - | grep -q '^-rw.* root/root '"
stream_sha1="$(cat f1/random.img.part.* | openssl enc -d -aes-128-cbc -K $KEY -iv $IV |
  gzip -dc | sha1sum | cut -c1-40)"
check tar-digest grep -q "<digest algorithm='SHA1'>$stream_sha1</digest><size>" \
  f1/random.img.manifest.xml
for who in user ec2; do
  for what in key iv; do
    want=$KEY && [ $what = iv ] && want=$IV
    grep -o "<${who}_encrypted_${what}[^>]*>[0-9a-f]*<" f1/random.img.manifest.xml |
      sed 's/.*>\([0-9a-f]*\)</\1/' | unhex >"enc-$who-$what"
    check "rsa-$who-$what" test "$(openssl pkeyutl -decrypt -inkey "$who-key.pem" \
      -pkeyopt rsa_padding_mode:pkcs1 -in "enc-$who-$what")" = "$want"
  done
done
openssl x509 -in user-cert.pem -noout -pubkey >user-pub.pem
sed 's#.*<signature>\([0-9a-f]*\)</signature>.*#\1#' sb/sparse.img.manifest.xml | unhex >sig.bin
region="$(grep -o '<machine_configuration>.*</machine_configuration>' sb/sparse.img.manifest.xml)"
region+="$(grep -o '<image>.*</image>' sb/sparse.img.manifest.xml)"
printf '%s' "$region" >region.bin
check signature-openssl openssl dgst -sha1 -verify user-pub.pem -signature sig.bin region.bin
check manifest-rexml-form grep -q "^<?xml version='1.0'?><manifest><version>2007-10-10</version><bundler><name>ec2-bundle-ref</name><version>1.0</version><release>0</release></bundler><machine_configuration><architecture>x86_64</architecture><block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device></mapping><mapping><virtual>ephemeral0</virtual><device>sdb</device></mapping><mapping><virtual>root</virtual><device>/dev/sda1</device></mapping></block_device_mapping><kernel_id>aki-1a2b3c4d</kernel_id><ramdisk_id>ari-4d3c2b1a</ramdisk_id><product_codes><product_code>ABC123</product_code></product_codes></machine_configuration><image><name>sparse.img</name><user>111122223333</user><type>machine</type><digest algorithm='SHA1'>[0-9a-f]\{40\}</digest><size>67108864</size><bundled_size>[0-9]*</bundled_size><ec2_encrypted_key algorithm='AES-128-CBC'>[0-9a-f]\{512\}</ec2_encrypted_key><user_encrypted_key algorithm='AES-128-CBC'>[0-9a-f]\{512\}</user_encrypted_key><ec2_encrypted_iv>[0-9a-f]\{512\}</ec2_encrypted_iv><user_encrypted_iv>[0-9a-f]\{512\}</user_encrypted_iv><parts count='1'><part index='0'><filename>sparse.img.part.0</filename><digest algorithm='SHA1'>[0-9a-f]\{40\}</digest></part></parts></image><signature>[0-9a-f]\{512\}</signature></manifest>$" sb/sparse.img.manifest.xml
check no-trailing-newline test "$(tail -c1 sb/sparse.img.manifest.xml)" = ">"

# ---- broken bundles ------------------------------------------------------------------------
M=sparse.img.manifest.xml
K=(--privatekey user-key.pem --cert user-cert.pem)
copy sb t && sed -i 's#<signature>0#<signature>1#;t;s#<signature>.#<signature>0#' t/$M
bad tampered-signature signature t/$M "${K[@]}"
copy sb t && sed -i 's#<size>67108864</size>#<size>1</size>#' t/$M
bad edited-image signature t/$M "${K[@]}"
copy sb t && sed -i 's#aki-1a2b3c4d#aki-00000000#' t/$M
bad edited-machine-configuration signature t/$M "${K[@]}"
bad wrong-cert signature sb/$M --privatekey user-key.pem --cert other-cert.pem
copy rb r && printf X | dd of=r/random.img.part.1 bs=1 seek=1000 conv=notrunc status=none
bad tampered-part parts r/random.img.manifest.xml "${K[@]}"
copy rb r && rm r/random.img.part.2
bad missing-part parts r/random.img.manifest.xml "${K[@]}"
copy sb t && sed -i 's#<filename>sparse.img.part.0</filename>#<filename>../x</filename>#' t/$M
bad traversing-part-name structure t/$M "${K[@]}"
copy sb t && sed -i 's#<name>sparse.img</name>#<name>../evil</name>#' t/$M && resign t/$M
bad traversing-image-name structure t/$M "${K[@]}"
copy sb t && sed -i "s#<manifest>#<!DOCTYPE manifest [<!ENTITY x 'y'>]><manifest>#" t/$M
bad doctype structure t/$M "${K[@]}"
copy sb t && sed -i 's#<version>2007-10-10</version>#<version>2007-10-11</version>#' t/$M
bad wrong-version structure t/$M "${K[@]}"
copy sb t && sed -i "s#<parts count='1'>#<parts count='2'>#" t/$M && resign t/$M
bad wrong-part-count structure t/$M "${K[@]}"
copy sb t && sed -i 's#<kernel_id>#<ramdisk_id>ari-4d3c2b1a</ramdisk_id><kernel_id>#; s#<ramdisk_id>ari-4d3c2b1a</ramdisk_id><product#<product#' t/$M && resign t/$M
bad element-order structure t/$M "${K[@]}"
copy sb t && sed -i 's#><#>\n<#g' t/$M
bad pretty-printed style t/$M --privatekey user-key.pem
bad wrong-private-key decrypt-key sb/$M --privatekey other-key.pem --cert user-cert.pem
copy sb t && sed -i "s#<digest algorithm='SHA1'>[0-9a-f]*</digest><size>#<digest algorithm='SHA1'>$(printf '0%.0s' {1..40})</digest><size>#" t/$M && resign t/$M
bad wrong-digest-resigned digest t/$M "${K[@]}"
copy sb t && sed -i 's#<name>sparse.img</name>#<name>other.img</name>#' t/$M && resign t/$M
bad other-member-name-resigned tar t/$M "${K[@]}"
copy sb t && sed -i 's#<size>67108864</size>#<size>67108865</size>#' t/$M && resign t/$M
bad wrong-size-resigned tar t/$M "${K[@]}"
copy rb r && printf X | dd of=r/random.img.part.1 bs=1 seek=1000 conv=notrunc status=none
sum="$(sha1sum r/random.img.part.1 | cut -c1-40)"
sed -i "s#\(<filename>random.img.part.1</filename><digest algorithm='SHA1'>\)[0-9a-f]*#\1$sum#" \
  r/random.img.manifest.xml && resign r/random.img.manifest.xml
bad corrupt-ciphertext-resigned gunzip r/random.img.manifest.xml "${K[@]}"
# Forged tar streams, encrypted with a known key and re-signed: the tar check must refuse
# them before GNU tar writes anything.
head -c 5000 /dev/urandom >small.img && echo extra >extra.txt
B small.img fb --key "$KEY" --iv "$IV"
forge() { # NAME TAR : bundle fb with TAR as its stream, in forged-NAME
  local d="forged-$1" m="forged-$1/small.img.manifest.xml" tarsum partsum size
  copy fb "$d"
  gzip -9 -n -c "$2" | openssl enc -e -aes-128-cbc -K $KEY -iv $IV >"$d/small.img.part.0"
  tarsum="$(sha1sum <"$2" | cut -c1-40)"
  partsum="$(sha1sum <"$d/small.img.part.0" | cut -c1-40)"
  size="$(stat -c %s "$d/small.img.part.0")"
  sed -i "s#<digest algorithm='SHA1'>[0-9a-f]*</digest><size>#<digest algorithm='SHA1'>$tarsum</digest><size>#;
    s#<bundled_size>[0-9]*<#<bundled_size>$size<#;
    s#\(</filename><digest algorithm='SHA1'>\)[0-9a-f]*#\1$partsum#" "$m"
  resign "$m"
}
T() { tar -c -S --format=gnu --owner 0 --group 0 "$@"; }
T -f same.tar small.img && forge same same.tar
roundtrip forged-control small.img forged-same/small.img.manifest.xml user-key.pem
T -f two.tar small.img extra.txt && forge two two.tar
bad two-members tar forged-two/small.img.manifest.xml "${K[@]}"
mkdir -p l && ln -sf /etc/hostname l/small.img && T -f link.tar -C l small.img && forge link link.tar
bad symlink-member tar forged-link/small.img.manifest.xml "${K[@]}"
tar -c --format=pax --owner 0 --group 0 -f pax.tar small.img && forge pax pax.tar
bad pax-member tar forged-pax/small.img.manifest.xml "${K[@]}"
tar -c --format=gnu --owner 1000 --group 0 -f owner.tar small.img && forge owner owner.tar
bad member-owner tar forged-owner/small.img.manifest.xml "${K[@]}"
mkdir -p d && cp small.img d/ && T -f dir.tar d/small.img && forge dir dir.tar
bad member-in-directory tar forged-dir/small.img.manifest.xml "${K[@]}"
head -c 4096 same.tar >short.tar && forge short short.tar
bad truncated-tar tar forged-short/small.img.manifest.xml "${K[@]}"

mkdir -p x-exists && : >x-exists/sparse.img
out="$(U --manifest sb/$M "${K[@]}" --destination x-exists 2>&1)"
if [ $? = 1 ] && grep -q ': extract: .*already exists' <<<"$out" && [ ! -s x-exists/sparse.img ]
then pass; else wrong "an existing image should be refused: $(tail -1 <<<"$out")"; fi

# ---- the command line ----------------------------------------------------------------------
mkdir bin && ln -s "$(command -v tar)" bin/tar && ln -s "$(command -v gzip)" bin/gzip
py="$(python3 -c 'import sys; print(sys.executable)')"
out="$(PATH="$work/bin" "$py" "$O/ec2-unbundle" --manifest sb/$M \
  "${K[@]}" --destination x-tools 2>&1)"
# shellcheck disable=SC2016 # the backquotes are part of the message
if [ $? = 1 ] && grep -q 'tools: openssl is not installed; run `bash tests/setup.sh`' <<<"$out"
then pass; else wrong "a missing openssl should fail with the setup hint: $out"; fi
"$O/ec2-unbundle" --manifest sb/$M >/dev/null 2>&1
check usage-exit-2 test $? = 2
"$O/ec2-bundle-ref" --image sparse.img --destination y --privatekey user-key.pem \
  --cert user-cert.pem --ec2cert ec2-cert.pem --user 1234 >/dev/null 2>&1
check ref-usage-exit-2 test $? = 2
out="$(B sparse.img y --privatekey other-key.pem 2>&1)"
check ref-key-not-cert test $? = 1 -a ! -e y/sparse.img.manifest.xml

echo "ec2-selftest: $passed passed, $failed failed"
[ "$failed" = 0 ]

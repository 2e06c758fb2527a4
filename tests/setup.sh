#!/usr/bin/env bash
# Installs every tool kiln's tests judge kiln with (tests/oracles/README.md says which check
# uses which). Idempotent: it installs only what is missing, runs `apt-get update` only when
# it has something to install, and takes about a second when everything is there.
#
#   * Debian packages (apt-get; needs root, or sudo without a password);
#   * a Python venv with the pinned packages of tests/oracles/requirements.txt;
#   * cloud-init's code, unpacked (not installed: that would enable its boot services) from
#     Debian's cloud-init package, because cloud-init is not on PyPI.
#
# The venv and cloud-init go under $KILN_TEST_CACHE, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/kiln-test. tests/run.sh runs this script first.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KILN_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln-test}"
venv="$cache/venv"
cloud_init="$cache/cloud-init"
requirements="$here/oracles/requirements.txt"

# Debian package : a command that proves it is installed.
packages=(
  qemu-utils:qemu-img 7zip:7zz xorriso:xorriso genisoimage:isoinfo libxml2-utils:xmllint
  mtools:mdir dosfstools:fsck.fat e2fsprogs:debugfs openssl:openssl gdisk:sgdisk
  fdisk:sfdisk util-linux:blkid man-db:man git:git diffutils:diff gnupg:gpg
  xz-utils:xz zstd:zstd bzip2:bzip2 gzip:gzip tar:tar
)

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
if ! command -v apt-get >/dev/null; then
  echo "setup.sh: this script installs with apt-get (Debian/Ubuntu); install by hand:" \
    "${packages[*]} python3-venv" >&2
  exit 1
fi
apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
}

missing=()
for entry in "${packages[@]}"; do
  command -v "${entry#*:}" >/dev/null || missing+=("${entry%%:*}")
done
# Creating a venv needs ensurepip, which Debian ships in python3-venv.
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: apt-get install ${missing[*]}"
  apt_update
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv: recreated when it is broken; pip runs only when requirements.txt changed.
stamp="$venv/kiln-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  echo "setup.sh: creating the venv $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup.sh: pip install -r tests/oracles/requirements.txt"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

# cloud-init's code from Debian's package, unpacked with dpkg-deb.
if [ ! -f "$cloud_init/usr/lib/python3/dist-packages/cloudinit/sources/DataSourceNoCloud.py" ]; then
  echo "setup.sh: unpacking Debian's cloud-init package into $cloud_init"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp" # apt-get download may run as the _apt user
  if ! (cd "$tmp" && apt-get download -qq cloud-init >/dev/null 2>&1); then
    apt_update
    (cd "$tmp" && apt-get download -qq cloud-init >/dev/null)
  fi
  rm -rf "$cloud_init.new"
  dpkg-deb -x "$tmp"/cloud-init_*.deb "$cloud_init.new"
  rm -rf "$cloud_init"
  mv "$cloud_init.new" "$cloud_init"
fi

# Prove the Python side imports, so a half-made venv is caught here and not in a test.
PYTHONPATH="$cloud_init/usr/lib/python3/dist-packages" "$venv/bin/python" - <<'EOF'
import importlib
for m in ("oslo_utils.imageutils.format_inspector", "cryptography", "pycdlib", "pyvmdk",
          "pyvhdi", "pyqcow", "yaml", "jinja2", "jsonschema", "cloudinit.sources.DataSourceNoCloud",
          "cloudinit.sources.DataSourceOVF"):
    importlib.import_module(m)
EOF
echo "setup.sh: ready ($("$venv/bin/python" -c 'import sys; print("python", sys.version.split()[0])');" \
  "$(qemu-img --version | head -1); cloud-init" \
  "$(sed -n 's/^__VERSION__ = "\(.*\)"/\1/p' "$cloud_init/usr/lib/python3/dist-packages/cloudinit/version.py"))"

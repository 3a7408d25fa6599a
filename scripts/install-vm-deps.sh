#!/usr/bin/env bash
# Installs what the lab on real virtual machines (vagrant/vmlab.sh, tests/tests/vm_lab.rs) needs
# on the host, from Debian's packages: QEMU, the bookworm qemu-utils, mmdebstrap, e2fsprogs and
# an ssh client. With --vagrant, also libvirt (for `vagrant up` with vagrant-libvirt).
# Idempotent; called by vagrant/vmlab.sh and by `scripts/install-deps.sh --vms`.
#
# Why the pinned qemu-utils: a newer backported qemu-utils (10.x) may already be installed, and
# Debian's qemu-system-x86 7.2 needs its own qemu-utils (same source version); apt then refuses
# or pulls a mismatched pair. We ask for bookworm's version explicitly (--allow-downgrades).
set -euo pipefail

VAGRANT=0
for a in "$@"; do
  case "$a" in
    --vagrant) VAGRANT=1 ;;
    *) echo "install-vm-deps.sh: unknown option $a (known: --vagrant)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install-vm-deps.sh: run as root" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | grep -q "^install ok installed"; }
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

PKGS=(mmdebstrap e2fsprogs openssh-client curl jq)
[ "$VAGRANT" = 1 ] && PKGS+=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base)
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done

updated=0
update() { [ "$updated" = 1 ] || { apt-get update -q >/dev/null; updated=1; }; }

# qemu-system-x86 and qemu-utils from bookworm itself, as a matched pair.
need_qemu=0
if ! installed qemu-system-x86 || ! installed qemu-utils; then
  need_qemu=1
elif [ "$(version qemu-system-x86)" != "$(version qemu-utils)" ] \
  && ! dpkg --compare-versions "$(version qemu-utils)" lt 1:8; then
  need_qemu=1
fi

export DEBIAN_FRONTEND=noninteractive
if [ "$need_qemu" = 1 ]; then
  update
  bookworm() { apt-cache madison "$1" | awk '$6 == "bookworm/main" {print $3; exit}'; }
  QV=$(bookworm qemu-system-x86); UV=$(bookworm qemu-utils)
  if [ -z "$QV" ] || [ -z "$UV" ]; then
    echo "install-vm-deps.sh: no bookworm qemu-system-x86/qemu-utils in the package lists" >&2
    exit 1
  fi
  echo "install-vm-deps: installing qemu-system-x86 $QV and qemu-utils $UV"
  apt-get install -y -q --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$QV" "qemu-utils=$UV" >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
  update
  echo "install-vm-deps: installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
for t in qemu-system-x86_64 qemu-img mmdebstrap mkfs.ext4 ssh ssh-keygen; do
  command -v "$t" >/dev/null || { echo "install-vm-deps.sh: $t is still missing" >&2; exit 1; }
done
echo "install-vm-deps: ok ($(qemu-system-x86_64 --version | head -1))"

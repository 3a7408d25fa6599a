#!/usr/bin/env bash
# Installs everything crosspod's build, tests and lab use on a fresh Debian machine.
# Idempotent: a second run installs nothing new and only refreshes the venv if it is broken.
# With --vms, also what the lab on real VMs needs (scripts/install-vm-deps.sh: QEMU, mmdebstrap).
set -euo pipefail
if [ "${1:-}" = --vms ]; then
  bash "$(dirname "$0")/install-vm-deps.sh"
  shift
fi

PKGS=(openvswitch-switch openvswitch-common nftables iproute2 iputils-ping tcpdump openssl
      postgresql python3-venv python3-pip procps psmisc curl jq ca-certificates
      pkg-config libssl-dev systemd vagrant vagrant-libvirt)
VENV=${CROSSPOD_VENV:-/var/lib/crosspod/venv}

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (sudo scripts/install-deps.sh)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # The openvswitch-switch service cannot start here (no kernel module, no systemd as PID 1);
  # policy-rc.d keeps the package scripts from trying, the lab starts its own daemons.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's own python, not whatever a version manager puts first on PATH.
PY=/usr/bin/python3
if [ ! -x "$VENV/bin/openstack" ] || ! "$VENV/bin/openstack" --version >/dev/null 2>&1; then
  echo "install-deps: creating venv $VENV with python-openstackclient"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q python-openstackclient
fi
"$VENV/bin/openstack" --version >/dev/null
echo "install-deps: ok (venv $VENV)"

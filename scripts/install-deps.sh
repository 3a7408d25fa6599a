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
      postgresql python3-venv python3-pip python3-dev gcc procps psmisc curl jq ca-certificates
      pkg-config libssl-dev systemd vagrant vagrant-libvirt
      udhcpc dnsmasq-base ethtool isc-dhcp-client iputils-arping)
VENV=${CROSSPOD_VENV:-/var/lib/crosspod/venv}
# Keystone (for --auth-strategy keystone, its tests and `crosspod lab up --keystone`) lives in
# a venv of its own: its pins must not fight python-openstackclient's.
KEYSTONE_VENV=${CROSSPOD_KEYSTONE_VENV:-/var/lib/crosspod/keystone-venv}
KEYSTONE_PINS=(keystone==30.0.0 uWSGI==2.0.31)

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

# uWSGI builds from source (gcc, python3-dev above); keystone-manage and uwsgi must both run.
keystone_ok() {
  "$KEYSTONE_VENV/bin/keystone-manage" --version >/dev/null 2>&1 \
    && "$KEYSTONE_VENV/bin/uwsgi" --version >/dev/null 2>&1 \
    && [ "$("$KEYSTONE_VENV/bin/pip" freeze 2>/dev/null | grep -ciE '^(keystone==30\.0\.0|uwsgi==2\.0\.31)$')" = 2 ]
}
if ! keystone_ok; then
  echo "install-deps: creating venv $KEYSTONE_VENV with ${KEYSTONE_PINS[*]}"
  rm -rf "$KEYSTONE_VENV"
  mkdir -p "$(dirname "$KEYSTONE_VENV")"
  "$PY" -m venv "$KEYSTONE_VENV"
  "$KEYSTONE_VENV/bin/pip" install -q --upgrade pip
  "$KEYSTONE_VENV/bin/pip" install -q "${KEYSTONE_PINS[@]}"
fi
keystone_ok

# The client libraries' own functional tests (openstacksdk, python-openstackclient), pinned:
# a venv apart, so their test dependencies (tempest, oslotest) stay out of the CLI's.
SUITES_VENV=${CROSSPOD_SUITES_VENV:-/var/lib/crosspod/suites-venv}
SUITES_REQ="$(dirname "$0")/client-suites-requirements.txt"
SUITES_STAMP="$SUITES_VENV/.crosspod-requirements"
if ! cmp -s "$SUITES_REQ" "$SUITES_STAMP" || ! "$SUITES_VENV/bin/python" -c 'import openstack, openstackclient, tempest, pytest' 2>/dev/null; then
  echo "install-deps: creating venv $SUITES_VENV for the client libraries' functional tests"
  rm -rf "$SUITES_VENV"
  "$PY" -m venv "$SUITES_VENV"
  "$SUITES_VENV/bin/pip" install -q --upgrade pip
  "$SUITES_VENV/bin/pip" install -q -r "$SUITES_REQ"
  cp "$SUITES_REQ" "$SUITES_STAMP"
fi
echo "install-deps: ok (venv $VENV, Keystone venv $KEYSTONE_VENV, suites venv $SUITES_VENV)"

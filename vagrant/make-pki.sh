#!/usr/bin/env bash
# Makes the lab's PKI on the host before `vagrant up` (the Vagrantfile runs it as a trigger):
# a CA, the controller's server certificate for node1's management address, and one client
# certificate per agent node, in vagrant/pki (rsynced into every VM as /vagrant/vagrant/pki).
# Kept when it exists. Uses the crosspod binary built on the host (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")"
CROSSPOD=${CROSSPOD_BIN:-../target/release/crosspod}
PKI=${CROSSPOD_PKI_DIR:-pki}
CONTROLLER_IP=${CROSSPOD_CONTROLLER_IP:-192.168.56.24}
NODES=${CROSSPOD_AGENT_NODES:-node1 node2}
if [ ! -x "$CROSSPOD" ]; then
  echo "make-pki: $CROSSPOD is missing: run 'cargo build --release' first" >&2
  exit 1
fi
"$CROSSPOD" pki --dir "$PKI" init
[ -f "$PKI/controller.pem" ] || "$CROSSPOD" pki --dir "$PKI" issue --server controller --san "$CONTROLLER_IP,node1,localhost"
for n in $NODES; do
  [ -f "$PKI/$n.pem" ] || "$CROSSPOD" pki --dir "$PKI" issue --node "$n"
done

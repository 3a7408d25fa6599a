#!/usr/bin/env bash
# Provisions one Vagrant VM of the crosspod lab. Run by `vagrant up` with CROSSPOD_* variables
# set from the Vagrantfile; the guide's local.conf settings map to them:
#   HOST_IP                          -> the management address (Vagrantfile NODES[..][:mgmt])
#   Q_ML2_PLUGIN_VLAN_TYPE_OPTIONS   -> CROSSPOD_NETWORK_VLAN_RANGES (controller)
#   OVS_BRIDGE_MAPPINGS              -> CROSSPOD_BRIDGE_MAPPINGS (agent)
#   OVS_PHYSICAL_BRIDGE + eth1/eth2  -> CROSSPOD_UPLINKS (agent)
#   TRICIRCLE_START_SERVICES=True    -> CROSSPOD_ROLE=controller
set -euo pipefail
: "${CROSSPOD_ROLE:?}" "${CROSSPOD_NODE:?}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q openvswitch-switch nftables iproute2 iputils-ping tcpdump curl jq

if [ "$CROSSPOD_ROLE" = upstream ]; then
  # The upstream router: eth3 is a trunk; VLAN 3001 carries 163.3.124.0/24.
  ovs-vsctl --may-exist add-br br-up
  ovs-vsctl --may-exist add-port br-up eth3
  ovs-vsctl --may-exist add-port br-up up0 tag=3001 -- set interface up0 type=internal
  ip link set eth3 up
  ip addr replace 163.3.124.1/24 dev up0
  ip link set up0 up
  sysctl -qw net.ipv4.ip_forward=1
  exit 0
fi

for b in crosspod-controller crosspod-agent crosspod; do
  if [ ! -x "/vagrant/target/release/$b" ]; then
    echo "provision: /vagrant/target/release/$b is missing: run 'cargo build --release' on the host first" >&2
    exit 1
  fi
  install -m 0755 "/vagrant/target/release/$b" /usr/local/bin/
done
install -d -m 0755 /etc/crosspod
TOKEN_ADMIN=${CROSSPOD_ADMIN_TOKEN:-vagrant-admin-token}
# The control channel's PKI, made on the host by make-pki.sh: each agent speaks mutual TLS
# with its own node's certificate, for that node only.
PKI=/vagrant/vagrant/pki
if [ "$CROSSPOD_ROLE" != upstream ] && [ ! -f "$PKI/$CROSSPOD_NODE.pem" ]; then
  echo "provision: $PKI/$CROSSPOD_NODE.pem is missing: run vagrant/make-pki.sh on the host (vagrant up does)" >&2
  exit 1
fi
install -d -m 0750 /etc/crosspod/pki
install -m 0644 "$PKI/ca.pem" /etc/crosspod/pki/ca.pem

if [ "$CROSSPOD_ROLE" = controller ]; then
  getent passwd crosspod >/dev/null || useradd --system --home /var/lib/crosspod --shell /usr/sbin/nologin crosspod
  cat > /etc/crosspod/tokens <<TOK
# TOKEN PROJECT ROLES [NODE]
$TOKEN_ADMIN admin admin
TOK
  chown root:crosspod /etc/crosspod/tokens; chmod 0640 /etc/crosspod/tokens
  install -m 0644 "$PKI/controller.pem" /etc/crosspod/pki/controller.pem
  install -m 0640 -g crosspod "$PKI/controller.key" /etc/crosspod/pki/controller.key
  chgrp crosspod /etc/crosspod/pki
  cat > /etc/crosspod/controller.toml <<CONF
bind = "0.0.0.0"
database = "sqlite:///var/lib/crosspod/controller.db"
tokens-file = "/etc/crosspod/tokens"
network-vlan-ranges = "$CROSSPOD_NETWORK_VLAN_RANGES"
agent-port = 19998
agent-tls-cert = "/etc/crosspod/pki/controller.pem"
agent-tls-key = "/etc/crosspod/pki/controller.key"
agent-ca = "/etc/crosspod/pki/ca.pem"
CONF
  install -m 0644 /vagrant/controller/systemd/crosspod-controller.service /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable --now crosspod-controller
fi

cat > /etc/crosspod/agent.toml <<CONF
pod = "$CROSSPOD_POD"
node = "$CROSSPOD_NODE"
controller-url = "https://$CROSSPOD_CONTROLLER_HOST:19998"
tls-cert = "/etc/crosspod/pki/$CROSSPOD_NODE.pem"
tls-key = "/etc/crosspod/pki/$CROSSPOD_NODE.key"
ca = "/etc/crosspod/pki/ca.pem"
bridge-mappings = "$CROSSPOD_BRIDGE_MAPPINGS"
uplinks = "$CROSSPOD_UPLINKS"
datapath-type = "system"
CONF
chmod 0600 /etc/crosspod/agent.toml
install -m 0644 "$PKI/$CROSSPOD_NODE.pem" "/etc/crosspod/pki/$CROSSPOD_NODE.pem"
install -m 0600 "$PKI/$CROSSPOD_NODE.key" "/etc/crosspod/pki/$CROSSPOD_NODE.key"
install -m 0644 /vagrant/agent/systemd/crosspod-agent.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now crosspod-agent

#!/usr/bin/env bash
# Provisions one Vagrant VM of the crosspod lab. Run by `vagrant up` with CROSSPOD_* variables
# set from the Vagrantfile; the guide's local.conf settings map to them:
#   HOST_IP                          -> the management address (Vagrantfile NODES[..][:mgmt])
#   Q_ML2_PLUGIN_VLAN_TYPE_OPTIONS   -> CROSSPOD_NETWORK_VLAN_RANGES (controller)
#   OVS_BRIDGE_MAPPINGS              -> CROSSPOD_BRIDGE_MAPPINGS (agent)
#   OVS_PHYSICAL_BRIDGE + eth1/eth2  -> CROSSPOD_UPLINKS (agent)
#   TRICIRCLE_START_SERVICES=True    -> CROSSPOD_ROLE=controller
# The QEMU lab (vmlab.sh) runs this same script at the VM's first boot, offline: the packages
# are already in its image, CROSSPOD_SRC is the image's copy of the tree and CROSSPOD_PKI the
# seed disk's PKI; CROSSPOD_NO_BLOCK=1 there because a boot-time unit must not wait for others.
set -euo pipefail
: "${CROSSPOD_ROLE:?}" "${CROSSPOD_NODE:?}"
SRC=${CROSSPOD_SRC:-/vagrant}
PKI=${CROSSPOD_PKI:-$SRC/vagrant/pki}
START=(--now)
if [ -n "${CROSSPOD_NO_BLOCK:-}" ]; then START+=(--no-block); fi
export DEBIAN_FRONTEND=noninteractive
mapfile -t PKGS < <(grep -v '^#' "$SRC/vagrant/packages.txt" | grep .)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
install -m 0755 "$SRC/vagrant/plug-vm.sh" /usr/local/sbin/crosspod-plug-vm

# The uplinks (CROSSPOD_UPLINKS=bridge:device,...) are trunks for OVS: up, no address, now and
# at every boot. Vagrant leaves `auto_config: false` NICs down, and OVS does not raise a system
# port's link: without this, br-vlan's eth2 stays DOWN and nothing crosses between the nodes.
[ "$CROSSPOD_ROLE" = upstream ] && CROSSPOD_UPLINKS=${CROSSPOD_UPLINKS:-br-up:eth2}
UPLINK_DEVS=()
IFS=, read -r -a _pairs <<<"${CROSSPOD_UPLINKS:-}"
for p in "${_pairs[@]}"; do [ -n "$p" ] && UPLINK_DEVS+=("${p#*:}"); done
if [ ${#UPLINK_DEVS[@]} -gt 0 ]; then
  if systemctl is-enabled --quiet systemd-networkd 2>/dev/null; then
    printf '[Match]\nName=%s\n[Link]\nRequiredForOnline=no\n[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\n' \
      "${UPLINK_DEVS[*]}" > /etc/systemd/network/30-crosspod-uplinks.network
  elif [ -d /etc/network/interfaces.d ]; then
    for d in "${UPLINK_DEVS[@]}"; do printf 'auto %s\niface %s inet manual\n' "$d" "$d"; done \
      > /etc/network/interfaces.d/crosspod-uplinks
  fi
  for d in "${UPLINK_DEVS[@]}"; do ip link set "$d" up; done
fi

if [ "$CROSSPOD_ROLE" = upstream ]; then
  # The upstream router: its uplink (CROSSPOD_UPLINKS=br-up:DEV, eth2 by default: eth0 NAT,
  # eth1 management, eth2 the external network) is a trunk; VLAN 3001 carries 163.3.124.0/24.
  UP=${CROSSPOD_UPLINKS#*:}
  ovs-vsctl --may-exist add-br br-up
  ovs-vsctl --may-exist add-port br-up "$UP"
  ovs-vsctl --may-exist add-port br-up up0 tag=3001 -- set interface up0 type=internal
  ip addr replace 163.3.124.1/24 dev up0
  ip link set up0 up
  sysctl -qw net.ipv4.ip_forward=1
  exit 0
fi

for b in crosspod-controller crosspod-agent crosspod; do
  if [ ! -x "$SRC/target/release/$b" ]; then
    echo "provision: $SRC/target/release/$b is missing: run 'cargo build --release' on the host first" >&2
    exit 1
  fi
  install -m 0755 "$SRC/target/release/$b" /usr/local/bin/
done
install -d -m 0755 /etc/crosspod
TOKEN_ADMIN=${CROSSPOD_ADMIN_TOKEN:-vagrant-admin-token}
# The control channel's PKI, made on the host by make-pki.sh: each agent speaks mutual TLS
# with its own node's certificate, for that node only.
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
  install -m 0644 "$SRC/controller/systemd/crosspod-controller.service" /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable "${START[@]}" crosspod-controller
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
install -m 0644 "$SRC/agent/systemd/crosspod-agent.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable "${START[@]}" crosspod-agent

#!/usr/bin/env bash
# The Nova stand-in on a lab node: plugs a "VM" (a network namespace) into br-vlan as os-vif
# would plug an instance: a veth whose node end is named tap<port id prefix> and carries
# external_ids:iface-id, the VM end is eth0 with the port's MAC, address and default route.
# Untagged: tagging is the agent's job. Idempotent: an existing VM of that name is replaced, so
# re-plugging after a node reboot (namespaces do not survive it) is the same command.
# Installed as /usr/local/sbin/crosspod-plug-vm by provision.sh.
#   crosspod-plug-vm NAME PORT_ID MAC ADDRESS/PREFIX GATEWAY
#   crosspod-plug-vm --delete NAME PORT_ID
set -euo pipefail
if [ "${1:-}" = --delete ]; then
  name=$2; tap="tap${3:0:11}"
  ovs-vsctl --if-exists del-port br-vlan "$tap"
  ip netns del "$name" 2>/dev/null || true
  ip link del "$tap" 2>/dev/null || true
  exit 0
fi
[ $# -eq 5 ] || { echo "usage: $0 NAME PORT_ID MAC ADDRESS/PREFIX GATEWAY" >&2; exit 2; }
name=$1 id=$2 mac=$3 addr=$4 gw=$5
tap="tap${id:0:11}"
# br-vlan is the agent's to create (once its pod exists): wait for it as Nova waits for br-int.
ovs-vsctl --timeout="${CROSSPOD_PLUG_WAIT:-300}" wait-until bridge br-vlan
ovs-vsctl --if-exists del-port br-vlan "$tap"
ip netns del "$name" 2>/dev/null || true
ip link del "$tap" 2>/dev/null || true
ip netns add "$name"
ip link add "$tap" type veth peer name eth0 netns "$name"
ip -n "$name" link set eth0 address "$mac"
ip -n "$name" addr add "$addr" dev eth0
ip -n "$name" link set eth0 up
ip -n "$name" link set lo up
ip link set "$tap" up
ip -n "$name" route add default via "$gw"
ovs-vsctl add-port br-vlan "$tap" -- set interface "$tap" external_ids:iface-id="$id" \
  external_ids:attached-mac="$mac" external_ids:iface-status=active
echo "plugged $name ($addr, $mac) as $tap, port $id"

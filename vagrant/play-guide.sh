#!/usr/bin/env bash
# Plays the multi-pod guide's "How to play", steps 5 to 15, across the VM lab, from the host.
# Two ways to reach the VMs:
#   - the QEMU lab: `eval "$(vagrant/vmlab.sh env)"; vagrant/play-guide.sh` (CROSSPOD_VMLAB set:
#     commands run over ssh with the run directory's ssh_config, API calls from the host to the
#     forwarded ports CROSSPOD_NEUTRON_URL and CROSSPOD_TRICIRCLE_URL);
#   - Vagrant: `vagrant up && ./play-guide.sh` in this directory (`vagrant ssh`; API calls run
#     on node1 with curl).
# "VMs" are namespaces on node1 and node2 plugged into br-vlan with an iface-id, as os-vif would
# plug a Nova instance (crosspod-plug-vm, vagrant/plug-vm.sh). Ends with vm1 <-> vm2, vm1 ->
# the upstream router, and ext -> floating IP pings, each waited for (GUIDE_WAIT seconds).
# Prints KEY=VALUE lines for callers: VM1_IP, VM2_IP, FLOATING_IP and one
# `VM=<name> <node> <port id> <mac> <address/prefix> <gateway>` per VM (to re-plug it).
set -euo pipefail
cd "$(dirname "$0")"
TOKEN=${CROSSPOD_ADMIN_TOKEN:-vagrant-admin-token}
WAIT=${GUIDE_WAIT:-120}

if [ -n "${CROSSPOD_VMLAB:-}" ]; then
  on() { local vm=$1; shift; ssh -F "$CROSSPOD_VMLAB/ssh_config" "$vm" "$*"; }
  api() { # METHOD URL [JSON]: from the host, prints the response body
    curl -sS --fail-with-body -X "$1" "$2" -H 'Content-Type: application/json' \
      -H "X-Auth-Token: $TOKEN" ${3:+-d "$3"}
  }
  T=${CROSSPOD_TRICIRCLE_URL:?}; N=${CROSSPOD_NEUTRON_URL:?}
else
  on() { local vm=$1; shift; vagrant ssh "$vm" -c "sudo bash -c $(printf '%q' "$*")" 2>/dev/null; }
  api() { # METHOD URL [JSON]: on node1, prints the response body
    on node1 "curl -sS --fail-with-body -X $1 '$2' -H 'Content-Type: application/json' -H 'X-Auth-Token: $TOKEN' ${3:+-d '$3'}"
  }
  T=http://127.0.0.1:19999; N=http://127.0.0.1:20001
fi
T0=$SECONDS
step() { printf '\n== step %s: %s (t=%ss)\n' "$1" "$2" "$((SECONDS - T0))"; }
# NODE NETNS TARGET: pings (one echo a second) until one answers or GUIDE_WAIT passes.
wait_ping() {
  local t=$SECONDS
  if on "$1" "for i in \$(seq $WAIT); do ip netns exec $2 ping -c1 -W1 $3 >/dev/null && exit 0; sleep 1; done; exit 1"; then
    echo "$2 on $1 reaches $3 ($((SECONDS - t)) s)"
  else
    echo "$2 on $1 does not reach $3 after $WAIT s" >&2; return 1
  fi
}

step 5 "pods"
api POST $T/v1.0/pods '{"pod": {"region_name":  "CentralRegion"}}'
api POST $T/v1.0/pods '{"pod": {"region_name":  "RegionOne", "az_name": "az1"}}'
api POST $T/v1.0/pods '{"pod": {"region_name":  "RegionTwo", "az_name": "az2"}}'

step 6 "networks and subnets"
NET1=$(api POST $N/v2.0/networks '{"network": {"name": "net1"}}' | jq -r .network.id)
SUB1=$(api POST $N/v2.0/subnets "{\"subnet\": {\"name\": \"subnet1\", \"network_id\": \"$NET1\", \"ip_version\": 4, \"cidr\": \"10.0.1.0/24\"}}" | jq -r .subnet.id)
NET2=$(api POST $N/v2.0/networks '{"network": {"name": "net2"}}' | jq -r .network.id)
SUB2=$(api POST $N/v2.0/subnets "{\"subnet\": {\"name\": \"subnet2\", \"network_id\": \"$NET2\", \"ip_version\": 4, \"cidr\": \"10.0.2.0/24\"}}" | jq -r .subnet.id)

step 8 "VMs"
boot() { # NODE NAME NET_ID
  local port mac ip gw
  port=$(api POST $N/v2.0/ports "{\"port\": {\"name\": \"$2\", \"network_id\": \"$3\", \"device_owner\": \"compute:nova\", \"binding:host_id\": \"$1\"}}")
  mac=$(jq -r .port.mac_address <<<"$port"); ip=$(jq -r '.port.fixed_ips[0].ip_address' <<<"$port")
  gw=$(api GET "$N/v2.0/subnets/$(jq -r '.port.fixed_ips[0].subnet_id' <<<"$port")" | jq -r .subnet.gateway_ip)
  local id; id=$(jq -r .port.id <<<"$port")
  on "$1" "crosspod-plug-vm $2 $id $mac $ip/24 $gw"
  echo "VM=$2 $1 $id $mac $ip/24 $gw"
  eval "IP_$2=$ip; PORT_$2=$id"
}
boot node1 vm1 "$NET1"
boot node2 vm2 "$NET2"

step 10 "external network (the guide's curl) and subnet"
EXT=$(api POST $N/v2.0/networks '{"network": {"name": "ext-net", "admin_state_up": true, "router:external": true,  "provider:network_type": "vlan", "provider:physical_network": "extern", "availability_zone_hints": ["RegionTwo"]}}' | jq -r .network.id)
api POST $N/v2.0/subnets "{\"subnet\": {\"name\": \"ext-subnet\", \"network_id\": \"$EXT\", \"ip_version\": 4, \"cidr\": \"163.3.124.0/24\", \"enable_dhcp\": false}}" >/dev/null

step 11 "router and interfaces"
R=$(api POST $N/v2.0/routers '{"router": {"name": "router"}}' | jq -r .router.id)
api PUT "$N/v2.0/routers/$R/add_router_interface" "{\"subnet_id\": \"$SUB1\"}" >/dev/null
api PUT "$N/v2.0/routers/$R/add_router_interface" "{\"subnet_id\": \"$SUB2\"}" >/dev/null

step 12 "gateway"
api PUT "$N/v2.0/routers/$R" "{\"router\": {\"external_gateway_info\": {\"network_id\": \"$EXT\"}}}" >/dev/null

step 13 "vm1 <-> vm2, and north-south"
wait_ping node1 vm1 "$IP_vm2"
wait_ping node2 vm2 "$IP_vm1"
wait_ping node1 vm1 163.3.124.1
wait_ping node2 vm2 163.3.124.1

step "14-15" "floating IP for vm1"
FIP=$(api POST $N/v2.0/floatingips "{\"floatingip\": {\"floating_network_id\": \"$EXT\", \"port_id\": \"$PORT_vm1\"}}" | jq -r .floatingip.floating_ip_address)
# The default security group admits only its own members: let ICMP in from the outside.
SG=$(api GET "$N/v2.0/ports/$PORT_vm1" | jq -r '.port.security_groups[0]')
api POST $N/v2.0/security-group-rules "{\"security_group_rule\": {\"security_group_id\": \"$SG\", \"direction\": \"ingress\", \"ethertype\": \"IPv4\", \"protocol\": \"icmp\"}}" >/dev/null
t=$SECONDS
on ext "for i in \$(seq $WAIT); do ping -c1 -W1 $FIP >/dev/null && exit 0; sleep 1; done; exit 1" \
  || { echo "ext does not reach the floating IP $FIP after $WAIT s" >&2; exit 1; }
echo "ext reaches the floating IP $FIP ($((SECONDS - t)) s)"
echo "VM1_IP=$IP_vm1"
echo "VM2_IP=$IP_vm2"
echo "FLOATING_IP=$FIP"
echo "done in $((SECONDS - T0)) s: vm1 $IP_vm1 (RegionOne) <-> vm2 $IP_vm2 (RegionTwo); floating IP $FIP reaches vm1 from ext"

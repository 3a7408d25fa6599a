#!/usr/bin/env bash
# Plays the multi-pod guide's "How to play", steps 5 to 15, across the Vagrant lab, from the
# host (in this directory, after `vagrant up`). API calls run on node1 (the controller) with
# curl; "VMs" are namespaces on node1 and node2 plugged into br-vlan with an iface-id, as
# os-vif would plug a Nova instance. Ends with vm1 <-> vm2 and ext -> floating IP pings.
set -euo pipefail
cd "$(dirname "$0")"
TOKEN=${CROSSPOD_ADMIN_TOKEN:-vagrant-admin-token}

on() { local vm=$1; shift; vagrant ssh "$vm" -c "sudo bash -c $(printf '%q' "$*")" 2>/dev/null; }
api() { # METHOD URL [JSON]: on node1, prints the response body
  on node1 "curl -sS --fail-with-body -X $1 '$2' -H 'Content-Type: application/json' -H 'X-Auth-Token: $TOKEN' ${3:+-d '$3'}"
}
T=http://127.0.0.1:19999; N=http://127.0.0.1:20001
step() { printf '\n== step %s: %s\n' "$1" "$2"; }

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
  local id; id=$(jq -r .port.id <<<"$port"); local tap="tap${id:0:11}"
  on "$1" "ip netns add $2 && ip link add $tap type veth peer name eth0 netns $2 &&
    ip -n $2 link set eth0 address $mac && ip -n $2 addr add $ip/24 dev eth0 &&
    ip -n $2 link set eth0 up && ip -n $2 link set lo up && ip link set $tap up &&
    ip -n $2 route add default via $gw &&
    ovs-vsctl add-port br-vlan $tap -- set interface $tap external_ids:iface-id=$id external_ids:attached-mac=$mac external_ids:iface-status=active"
  echo "$2: $ip on $1 (port $id)"
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

step 13 "vm1 <-> vm2"
sleep 5
on node1 "ip netns exec vm1 ping -c3 $IP_vm2"
on node2 "ip netns exec vm2 ping -c3 $IP_vm1"
on node1 "ip netns exec vm1 ping -c3 163.3.124.1"

step "14-15" "floating IP for vm1"
FIP=$(api POST $N/v2.0/floatingips "{\"floatingip\": {\"floating_network_id\": \"$EXT\", \"port_id\": \"$PORT_vm1\"}}" | jq -r .floatingip.floating_ip_address)
sleep 5
on ext "ping -c3 $FIP"
echo "done: vm1 $IP_vm1 (RegionOne) <-> vm2 $IP_vm2 (RegionTwo); floating IP $FIP reaches vm1 from ext"

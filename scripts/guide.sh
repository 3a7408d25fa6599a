#!/usr/bin/env bash
# Plays the multi-pod guide's "How to play", steps 5 to 15, against a running crosspod lab
# (`crosspod lab up`), printing each step and each command. Used by scripts/demo.sh and by the
# end-to-end test (tests/tests/guide.rs).
#
# Environment (all optional):
#   CROSSPOD          the crosspod binary                 [crosspod on PATH]
#   CROSSPOD_LAB_DIR  the lab directory                   [/var/lib/crosspod/lab]
#   OPENSTACK         the openstack CLI                   [/var/lib/crosspod/venv/bin/openstack]
#   VM1, VM2          names of the two VMs                [vm1, vm2]
#   GUIDE_WAIT        seconds to wait for connectivity    [60]
#   GUIDE_ORDER       `guide`; `gateway-first`: the router's gateway before its interfaces;
#                     `ext-last`: the external network created after the interfaces (the
#                     order the guide warns Tricircle could not take) [guide]
set -euo pipefail

CROSSPOD=${CROSSPOD:-crosspod}
OPENSTACK=${OPENSTACK:-/var/lib/crosspod/venv/bin/openstack}
LAB_DIR=${CROSSPOD_LAB_DIR:-/var/lib/crosspod/lab}
VM1=${VM1:-vm1}
VM2=${VM2:-vm2}
GUIDE_WAIT=${GUIDE_WAIT:-60}
GUIDE_ORDER=${GUIDE_ORDER:-guide}

eval "$("$CROSSPOD" lab env --dir "$LAB_DIR")"
NEUTRON_URL=${OS_ENDPOINT:?lab env sets OS_ENDPOINT}
TRICIRCLE_URL=${CROSSPOD_TRICIRCLE_URL:-http://127.0.0.1:19999}

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { echo; bold "== step $1: $2"; }
run() { printf '$ %s\n' "$*"; "$@"; }
os() { printf '$ openstack %s\n' "$*"; "$OPENSTACK" "$@"; }
osv() { "$OPENSTACK" "$@"; }

step 5 "create the pods (Tricircle API, the guide's curl commands)"
for body in '{"pod": {"region_name":  "CentralRegion"}}' \
            '{"pod": {"region_name":  "RegionOne", "az_name": "az1"}}' \
            '{"pod": {"region_name":  "RegionTwo", "az_name": "az2"}}'; do
  printf '$ curl -X POST %s/v1.0/pods ... -d %s\n' "$TRICIRCLE_URL" "$body"
  curl -sS --fail-with-body -X POST "$TRICIRCLE_URL/v1.0/pods" -H "Content-Type: application/json" \
    -H "X-Auth-Token: $token" -d "$body"
  echo
done

step 6 "networks and subnets"
os network create net1 -f value -c id
os subnet create --network net1 --subnet-range 10.0.1.0/24 subnet1 -f value -c id
os network create net2 -f value -c id
os subnet create --network net2 --subnet-range 10.0.2.0/24 subnet2 -f value -c id

step 7 "images and flavors"
echo "(not needed: lab VMs are network namespaces)"

step 8 "boot the VMs (crosspod vm stands in for Nova)"
run "$CROSSPOD" vm boot --dir "$LAB_DIR" --region RegionOne --network net1 "$VM1"
run "$CROSSPOD" vm boot --dir "$LAB_DIR" --region RegionTwo --network net2 "$VM2"

step 9 "the VMs' ports"
os port list
run "$CROSSPOD" vm list --dir "$LAB_DIR"

step10() {
step 10 "the external network (the guide's curl) and its subnet"
body='{"network": {"name": "ext-net", "admin_state_up": true, "router:external": true,  "provider:network_type": "vlan", "provider:physical_network": "extern", "availability_zone_hints": ["RegionTwo"]}}'
printf '$ curl -X POST %s/v2.0/networks ... -d %s\n' "$NEUTRON_URL" "$body"
curl -sS --fail-with-body -X POST "$NEUTRON_URL/v2.0/networks" -H "Content-Type: application/json" \
  -H "X-Auth-Token: $token" -d "$body"
echo
os subnet create --network ext-net --no-dhcp --subnet-range 163.3.124.0/24 ext-subnet -f value -c id

}
step11() {
step 11 "the router and its interfaces"
os router create router -f value -c id
os router add subnet router subnet1
os router add subnet router subnet2

}
step12() {
step 12 "the router's external gateway"
os router set --external-gateway ext-net router

}
if [ "$GUIDE_ORDER" = gateway-first ]; then
  echo; echo "(order: gateway first: steps 10, 11 without interfaces, 12, then the interfaces)"
  step10
  step 11 "the router"
  os router create router -f value -c id
  step 12 "the router's external gateway, before any interface"
  os router set --external-gateway ext-net router
  step 11 "the router's interfaces"
  os router add subnet router subnet1
  os router add subnet router subnet2
elif [ "$GUIDE_ORDER" = ext-last ]; then
  echo; echo "(order: the external network after the interfaces)"
  step11
  step10
  step12
else
  step10
  step11
  step12
fi

step 13 "vm1 <-> vm2 across the pods"
vm_ip() { "$CROSSPOD" vm list --dir "$LAB_DIR" --json | jq -r --arg n "$1" '.[] | select(.name == $n) | .address | split("/")[0]'; }
vm_ns() { echo "$1"; }  # a lab VM's namespace is its name
wait_ping() { # NS TARGET
  local deadline=$((SECONDS + GUIDE_WAIT))
  until ip netns exec "$1" ping -c1 -W1 "$2" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "no answer from $2 in $1 after ${GUIDE_WAIT}s" >&2; return 1; fi
  done
  printf '$ ip netns exec %s ping -c1 %s\n' "$1" "$2"; ip netns exec "$1" ping -c1 -W1 "$2" | sed -n 2p
}
IP1=$(vm_ip "$VM1"); IP2=$(vm_ip "$VM2"); NS1=$(vm_ns "$VM1"); NS2=$(vm_ns "$VM2")
wait_ping "$NS1" "$IP2"
wait_ping "$NS2" "$IP1"
wait_ping "$NS1" 163.3.124.1
wait_ping "$NS2" 163.3.124.1

step 14 "a floating IP"
FIP=$(osv floating ip create ext-net -f value -c floating_ip_address)
echo "$ openstack floating ip create ext-net  ->  $FIP"

step 15 "associate it with $VM1's port"
PORT1=$("$CROSSPOD" vm list --dir "$LAB_DIR" --json | jq -r --arg n "$VM1" '.[] | select(.name == $n) | .port_id')
os floating ip set --port "$PORT1" "$FIP"
# As on any OpenStack cloud, the default security group admits only its own members: let ICMP
# in from the outside so the floating IP answers.
SG1=$("$OPENSTACK" port show "$PORT1" -f json | jq -r '.security_group_ids[0]')
os security group rule create --ingress --protocol icmp "$SG1" -f value -c id
EXT_NS=$(jq -r '.prefix + "ext"' "$LAB_DIR/state.json")
wait_ping "$EXT_NS" "$FIP"
echo
bold "The guide's scenario is in place: $VM1 ($IP1, RegionOne) <-> $VM2 ($IP2, RegionTwo), both reach 163.3.124.1, and $FIP reaches $VM1 from the external network."
echo "FLOATING_IP=$FIP"
echo "VM1_IP=$IP1"
echo "VM2_IP=$IP2"

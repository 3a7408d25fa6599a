#!/usr/bin/env bash
# Benchmark of the lab on real VMs against the namespace lab, in one run, printed as a table:
#   - from nothing to the guide's pings: `vmlab.sh up` (image from the cache, or built when its
#     inputs changed: the table says which) + play-guide.sh; `crosspod lab up` + scripts/guide.sh;
#   - router add -> first cross-pod ping: PUT add_router_interface (subnet2) to vm1 -> vm2's first
#     answered ping (pings wait 0.2 s), ROUNDS times after removing the interface and seeing the
#     pings fail; measured inside node1 on the VMs (no ssh in the timing), on the host for the
#     namespace lab. Kernel datapath (VMs) against OVS's userspace datapath (namespaces).
# Needs root, the release binaries (cargo build --release --bins) and the openstack venv.
#   vagrant/bench.sh [ROUNDS]      (default 5)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${1:-5}
BIN=$(realpath -m "${CROSSPOD_BIN_DIR:-$ROOT/target/release}")
export CROSSPOD_BIN_DIR=$BIN
WORK=$(mktemp -d /var/tmp/crosspod-bench.XXXXXX)
export CROSSPOD_VMLAB_DIR=$WORK/vmlab
NSLAB=$WORK/nslab
PREFIX=bn$$-
cleanup() {
  bash "$HERE/vmlab.sh" down >/dev/null 2>&1 || true
  "$BIN/crosspod" lab down --dir "$NSLAB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# One round, as a script for bash -s: remove the interface, wait for the pings to fail, add
# it back and time the API call plus the wait for the first answer. Prints milliseconds.
round_script() { # NEUTRON_URL TOKEN ROUTER SUBNET NETNS TARGET
  cat <<SH
put() { curl -sS -o /dev/null --fail-with-body -X PUT "$1/v2.0/routers/$3/\$1" \
  -H 'Content-Type: application/json' -H 'X-Auth-Token: $2' -d '{"subnet_id": "$4"}'; }
ping1() { ip netns exec $5 ping -c1 -W0.2 $6 >/dev/null 2>&1; }
put remove_router_interface
for i in \$(seq 600); do ping1 || break; sleep 0.1; done
t0=\$(date +%s%N)
put add_router_interface
for i in \$(seq 3000); do ping1 && break; done
ping1 || { echo "no ping after the add" >&2; exit 1; }
echo \$(( (\$(date +%s%N) - t0) / 1000000 ))
SH
}

stats() { # values... -> "p50 p95 min max" (ms)
  printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {
    p50=v[int((NR-1)*0.5+0.5)+1]; p95=v[int((NR-1)*0.95+0.5)+1];
    printf "%d %d %d %d", p50, p95, v[1], v[NR] }'
}

ids() { # NEUTRON_URL TOKEN -> "ROUTER SUBNET2"
  local r s
  r=$(curl -sf -H "X-Auth-Token: $2" "$1/v2.0/routers?name=router" | jq -r '.routers[0].id')
  s=$(curl -sf -H "X-Auth-Token: $2" "$1/v2.0/subnets?name=subnet2" | jq -r '.subnets[0].id')
  echo "$r $s"
}

# ---- the VMs
cache_state=cached
[ -n "$(ls -d "${CROSSPOD_VM_CACHE:-/var/cache/crosspod-vmlab}"/image-* 2>/dev/null)" ] || cache_state=built
t0=$SECONDS
bash "$HERE/vmlab.sh" up
vm_up=$((SECONDS - t0))
eval "$(bash "$HERE/vmlab.sh" env)"
t1=$SECONDS
GUIDE_WAIT=300 bash "$HERE/play-guide.sh" > "$WORK/vm-guide.out"
vm_guide=$((SECONDS - t1))
vm_total=$((SECONDS - t0))
vm2_ip=$(sed -n 's/^VM2_IP=//p' "$WORK/vm-guide.out")
read -r R S < <(ids "$CROSSPOD_NEUTRON_URL" "$CROSSPOD_ADMIN_TOKEN")
vm_rounds=()
for _ in $(seq "$ROUNDS"); do
  vm_rounds+=("$(round_script http://127.0.0.1:20001 "$CROSSPOD_ADMIN_TOKEN" "$R" "$S" vm1 "$vm2_ip" \
    | ssh -F "$CROSSPOD_VMLAB/ssh_config" node1 bash -s)")
done
accel=$(sed -n 's/^ACCEL=//p' "$CROSSPOD_VMLAB/lab.env")
bash "$HERE/vmlab.sh" down >/dev/null

# ---- the namespace lab
TP=$((40000 + RANDOM % 10000)); NP=$((TP + 1))
t0=$SECONDS
"$BIN/crosspod" lab up --dir "$NSLAB" --prefix "$PREFIX" --tricircle-port "$TP" --neutron-port "$NP" >/dev/null
ns_up=$((SECONDS - t0))
t1=$SECONDS
CROSSPOD="$BIN/crosspod" CROSSPOD_LAB_DIR="$NSLAB" CROSSPOD_TRICIRCLE_URL="http://127.0.0.1:$TP" \
  VM1="${PREFIX}vm1" VM2="${PREFIX}vm2" GUIDE_WAIT=90 bash "$ROOT/scripts/guide.sh" > "$WORK/ns-guide.out"
ns_guide=$((SECONDS - t1))
ns_total=$((SECONDS - t0))
ns2_ip=$(sed -n 's/^VM2_IP=//p' "$WORK/ns-guide.out")
ns_token=$("$BIN/crosspod" lab env --dir "$NSLAB" | sed -n "s/^export OS_TOKEN='\{0,1\}\([^']*\)'\{0,1\}$/\1/p")
read -r R S < <(ids "http://127.0.0.1:$NP" "$ns_token")
ns_rounds=()
for _ in $(seq "$ROUNDS"); do
  ns_rounds+=("$(round_script "http://127.0.0.1:$NP" "$ns_token" "$R" "$S" "${PREFIX}vm1" "$ns2_ip" | bash -s)")
done

read -r vp50 vp95 vmin vmax <<<"$(stats "${vm_rounds[@]}")"
read -r np50 np95 nmin nmax <<<"$(stats "${ns_rounds[@]}")"
printf '\n| %-44s | %-22s | %-22s |\n' "measure" "VMs ($accel, kernel DP)" "namespace lab (netdev)"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..24})" "$(printf -- '-%.0s' {1..24})"
printf '| %-44s | %-22s | %-22s |\n' "lab up (VMs: image $cache_state)" "${vm_up} s" "${ns_up} s"
printf '| %-44s | %-22s | %-22s |\n' "the guide, to its last ping" "${vm_guide} s" "${ns_guide} s"
printf '| %-44s | %-22s | %-22s |\n' "from nothing to the guide's pings" "${vm_total} s" "${ns_total} s"
printf '| %-44s | %-22s | %-22s |\n' "router add -> first cross-pod ping, p50 ($ROUNDS)" "${vp50} ms" "${np50} ms"
printf '| %-44s | %-22s | %-22s |\n' "router add -> first cross-pod ping, p95" "${vp95} ms" "${np95} ms"
printf '| %-44s | %-22s | %-22s |\n' "router add -> first cross-pod ping, min-max" "${vmin}-${vmax} ms" "${nmin}-${nmax} ms"

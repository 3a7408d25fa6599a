#!/usr/bin/env bash
# The main job: on this machine, install the prerequisites, build crosspod, bring up the
# two-pod lab (namespaces node1/RegionOne, node2/RegionTwo, ext; each node with its own OVS;
# the controller and one agent per node) and play the multi-pod guide's "How to play", steps 5
# to 15, then show the connectivity matrix from real packets. The lab stays up to explore.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: the lab needs root (namespaces, OVS): run sudo scripts/demo.sh" >&2
  exit 1
fi
say() { if [ -t 1 ]; then printf '\n\033[1;34m### %s\033[0m\n' "$*"; else printf '\n### %s\n' "$*"; fi; }

say "1/4 prerequisites (Debian packages, the openstack CLI venv)"
bash scripts/install-deps.sh

say "2/4 building crosspod"
# Build as the user who ran sudo, with their toolchain, so target/ stays theirs.
BUILD_USER=${SUDO_USER:-root}
BUILD_HOME=$(getent passwd "$BUILD_USER" | cut -d: -f6)
CARGO=$(PATH="$BUILD_HOME/.cargo/bin:$PATH" command -v cargo || true)
if [ -z "$CARGO" ]; then
  echo "demo.sh: no Rust toolchain found (cargo). Install one (https://rustup.rs, Rust >= 1.87)" >&2
  echo "         for $BUILD_USER, then run sudo scripts/demo.sh again." >&2
  exit 1
fi
if [ "$BUILD_USER" != root ]; then
  sudo -u "$BUILD_USER" env PATH="$(dirname "$CARGO"):$PATH" "$CARGO" build --workspace --bins
else
  "$CARGO" build --workspace --bins
fi
BIN="$ROOT/target/debug"
export CROSSPOD="$BIN/crosspod"
export CROSSPOD_LAB_DIR=${CROSSPOD_LAB_DIR:-/var/lib/crosspod/lab}

say "3/4 the lab"
"$CROSSPOD" lab up --dir "$CROSSPOD_LAB_DIR"
eval "$("$CROSSPOD" lab env --dir "$CROSSPOD_LAB_DIR")"
TRICIRCLE_URL=${CROSSPOD_TRICIRCLE_URL:-http://127.0.0.1:19999}
pods=$(curl -sS -H "X-Auth-Token: $token" "$TRICIRCLE_URL/v1.0/pods" | jq '.pods | length')

say "4/4 the guide's \"How to play\", steps 5 to 15"
if [ "${pods:-0}" -gt 0 ]; then
  echo "The lab already has $pods pods: the scenario was played before; showing its state."
  echo "(To replay it from scratch: sudo $CROSSPOD lab down --dir $CROSSPOD_LAB_DIR; sudo scripts/demo.sh)"
else
  bash scripts/guide.sh
fi

echo
"$CROSSPOD" probe --dir "$CROSSPOD_LAB_DIR" || true

cat <<MSG

The lab is up. Explore it:
  eval "\$($CROSSPOD lab env --dir $CROSSPOD_LAB_DIR)"
  /var/lib/crosspod/venv/bin/openstack router show router
  $CROSSPOD vm list; $CROSSPOD probe; $CROSSPOD lab status
  ip netns exec vm1 ping 10.0.2.x           # across the pods
  ovs-vsctl --db=\$CROSSPOD_OVSDB_node1 show  # node1's switch
Tear it down (every namespace, daemon, cable and file it made):
  sudo $CROSSPOD lab down --dir $CROSSPOD_LAB_DIR
MSG

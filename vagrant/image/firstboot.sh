#!/usr/bin/env bash
# First boot of a crosspod lab VM made by vagrant/vmlab.sh, with no cloud-init: the per-node
# settings come from a small seed disk (/dev/vdb, made by vmlab.sh: node.env, the node's PKI,
# the runner's ssh key) and the kernel command line names the node (crosspod.node=NAME).
#   firstboot.sh seed       early, before networkd and sshd: hostname, addresses, ssh keys
#   firstboot.sh provision  after OVS is up: vagrant/provision.sh, as `vagrant up` runs it
# Each step runs once; its mark lives on the node's own disk, so a reboot skips it.
set -euo pipefail
STATE=/var/lib/crosspod-seed
say() { echo "crosspod-firstboot: $*"; echo "crosspod-firstboot: $*" > /dev/ttyS0 2>/dev/null || true; }

seed() {
  local node mnt=/run/crosspod-seed
  node=$(sed -n 's/.*crosspod\.node=\([^ ]*\).*/\1/p' /proc/cmdline)
  [ -n "$node" ] || { say "no crosspod.node= on the kernel command line"; exit 1; }
  mkdir -p "$mnt" "$STATE"
  mount -o ro /dev/vdb "$mnt"
  trap 'umount '"$mnt" EXIT
  # shellcheck disable=SC1091
  . "$mnt/node.env"
  [ "$CROSSPOD_NODE" = "$node" ] || { say "seed is for $CROSSPOD_NODE, not $node"; exit 1; }
  cp -a "$mnt/." "$STATE/"
  echo "$node" > /etc/hostname
  hostname "$node"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n%s\n' "$node" "$CROSSPOD_HOSTS" > /etc/hosts
  mkdir -p /etc/systemd/network
  # eth0: QEMU's user-mode network (the host's port forwards), like Vagrant's NAT interface.
  cat > /etc/systemd/network/10-eth0.network <<NET
[Match]
Name=eth0
[Network]
Address=$CROSSPOD_NAT_IP
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
  # eth1: the management network (HOST_IP in the guide).
  cat > /etc/systemd/network/20-eth1.network <<NET
[Match]
Name=eth1
[Network]
Address=$CROSSPOD_MGMT_IP/24
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
  # (The provider and external NICs are provision.sh's: it brings every uplink up.)
  install -d -m 0700 /root/.ssh
  install -m 0600 "$STATE/authorized_keys" /root/.ssh/authorized_keys
  # Host keys of this VM's own (the image has none). ed25519 only: RSA key generation takes
  # minutes on an emulated CPU.
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
  echo "HostKey /etc/ssh/ssh_host_ed25519_key" > /etc/ssh/sshd_config.d/crosspod-hostkey.conf
  touch "$STATE/seeded"
  say "seeded $node (management $CROSSPOD_MGMT_IP)"
}

provision() {
  set -a
  # shellcheck disable=SC1091
  . "$STATE/node.env"
  set +a
  export CROSSPOD_SRC=/opt/crosspod CROSSPOD_PKI="$STATE/pki" CROSSPOD_NO_BLOCK=1
  bash /opt/crosspod/vagrant/provision.sh
  touch "$STATE/provisioned"
  say "provisioned $CROSSPOD_NODE as $CROSSPOD_ROLE"
}

case "${1:-}" in
  seed) seed ;;
  provision) provision ;;
  *) echo "usage: $0 seed|provision" >&2; exit 2 ;;
esac

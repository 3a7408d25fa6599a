#!/usr/bin/env bash
# `vagrant up` with vagrant-libvirt on this machine, without touching the host's network:
# libvirtd (and virtlogd) run by hand inside a network namespace of their own, so the libvirt
# networks the Vagrantfile asks for (bridges, dnsmasq, NAT rules) exist only there, and vagrant
# itself runs in that namespace. The box is the QEMU lab's image (`vmlab.sh box`).
#   vagrant/libvirt.sh up       start libvirtd, add the box, vagrant up (provisioning included)
#   vagrant/libvirt.sh play     vagrant/play-guide.sh through `vagrant ssh`
#   vagrant/libvirt.sh down     vagrant destroy, stop libvirtd/virtlogd by pid, remove the netns
# Environment: CROSSPOD_LIBVIRT_DRIVER (kvm or qemu; qemu = TCG, the default here since KVM
# guests hang on these machines), CROSSPOD_VM_MEMORY, CROSSPOD_VM_CPUS.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
NS=${CROSSPOD_LIBVIRT_NETNS:-crosspod-virt}
STATE=${CROSSPOD_LIBVIRT_STATE:-/var/tmp/crosspod-libvirt}
export VAGRANT_HOME=$STATE/vagrant.d VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DEFAULT_PROVIDER=libvirt
export CROSSPOD_BOX=crosspod/vmlab CROSSPOD_LIBVIRT_DRIVER=${CROSSPOD_LIBVIRT_DRIVER:-qemu}
export CROSSPOD_VM_MEMORY=${CROSSPOD_VM_MEMORY:-1024} CROSSPOD_VM_CPUS=${CROSSPOD_VM_CPUS:-1}
log() { echo "libvirt.sh: $*" >&2; }
in_ns() { ip netns exec "$NS" "$@"; }

start_libvirt() {
  mkdir -p "$STATE"
  ip netns list | grep -qw "$NS" || { ip netns add "$NS"; ip -n "$NS" link set lo up; }
  if ! { [ -f "$STATE/virtlogd.pid" ] && kill -0 "$(cat "$STATE/virtlogd.pid")" 2>/dev/null; }; then
    in_ns virtlogd -d -p "$STATE/virtlogd.pid"
  fi
  if ! { [ -f "$STATE/libvirtd.pid" ] && kill -0 "$(cat "$STATE/libvirtd.pid")" 2>/dev/null; }; then
    in_ns libvirtd -d -p "$STATE/libvirtd.pid"
  fi
  for _ in $(seq 30); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
  virsh -c qemu:///system pool-info default >/dev/null 2>&1 || {
    mkdir -p /var/lib/libvirt/images
    virsh -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
    virsh -c qemu:///system pool-start default >/dev/null
  }
}

case "${1:-}" in
  up)
    bash "$ROOT/scripts/install-vm-deps.sh" --vagrant >&2
    start_libvirt
    box=$(bash "$HERE/vmlab.sh" box)
    vagrant box add --force --name "$CROSSPOD_BOX" "$box" >&2
    cd "$HERE" && in_ns env VAGRANT_HOME="$VAGRANT_HOME" vagrant up --provider=libvirt
    ;;
  play)
    cd "$HERE" && in_ns env VAGRANT_HOME="$VAGRANT_HOME" bash ./play-guide.sh
    ;;
  down)
    if [ -d "$STATE" ]; then
      (cd "$HERE" && in_ns env VAGRANT_HOME="$VAGRANT_HOME" vagrant destroy -f) || true
      # The box's volume that vagrant-libvirt uploaded into the default pool.
      for v in $(virsh -c qemu:///system vol-list default 2>/dev/null | awk '/crosspod-VAGRANTSLASH-vmlab/ {print $1}'); do
        virsh -c qemu:///system vol-delete --pool default "$v" >/dev/null || true
      done
      for d in libvirtd virtlogd; do
        if [ -f "$STATE/$d.pid" ]; then kill "$(cat "$STATE/$d.pid")" 2>/dev/null || true; fi
      done
      # The box file is made again from the cached image in seconds; it is not kept.
      rm -rf "$STATE" "$HERE/.vagrant" "${CROSSPOD_VM_CACHE:-/var/cache/crosspod-vmlab}/crosspod-vmlab.box"
    fi
    ip netns del "$NS" 2>/dev/null || true
    ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

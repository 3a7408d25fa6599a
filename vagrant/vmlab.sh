#!/usr/bin/env bash
# crosspod's multi-node lab on real virtual machines: the Vagrantfile's three nodes booted with
# QEMU on this machine, wired by QEMU's own sockets, nothing outside the machine.
#
#   vagrant/vmlab.sh image          build (or reuse) the node image
#   vagrant/vmlab.sh box            the same image as a vagrant-libvirt box (vagrant/libvirt.sh)
#   vagrant/vmlab.sh up             image, PKI, seed disks, boot node1 node2 ext, wait for
#                                   provisioning and the controller's API
#   vagrant/vmlab.sh status         each VM: process, ssh, units
#   vagrant/vmlab.sh ssh NODE [CMD] a shell or a command on a node (as root)
#   vagrant/vmlab.sh reboot NODE    reboot a node from inside, wait until ssh answers again
#   vagrant/vmlab.sh env            exports for play-guide.sh (CROSSPOD_VMLAB, API URLs, token)
#   vagrant/vmlab.sh down           kill the VMs by pid, remove the run directory
#
# The image: Debian bookworm by mmdebstrap (Debian's packages only) with the kernel
# (linux-image-cloud-amd64: openvswitch.ko, 8021q.ko), systemd, sshd, the packages of
# vagrant/packages.txt, and /opt/crosspod: the release binaries, the shipped systemd units,
# provision.sh and plug-vm.sh laid out as the repository (Vagrant's /vagrant). Cached under
# $CROSSPOD_VM_CACHE by the content hash of its inputs: the Debian part by its package list, the
# image by that plus every file copied in, so a second run with the same binaries boots at once.
# Each node boots the kernel directly (-kernel/-initrd from the image), on a qcow2 overlay of
# the shared image and a small seed disk: node.env with the Vagrantfile's settings for it, its
# PKI, the runner's ssh key. Its first boot runs vagrant/provision.sh from a unit (image/).
#
# NICs, as the Vagrantfile (net.ifnames=0): eth0 QEMU user-mode (restrict=on: no way out of the
# machine; host port forwards to sshd, and on node1 to the APIs), eth1 management
# (192.168.56.0/24, node1<->node2), eth2 provider VLAN network (node1<->node2), eth3 external
# (node2) / eth2 external (ext). Links between VMs are QEMU `dgram` netdevs over unix sockets in
# the run directory. KVM when it works (a probe boot, cached), TCG otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
RUN=${CROSSPOD_VMLAB_DIR:-/var/tmp/crosspod-vmlab}
CACHE=${CROSSPOD_VM_CACHE:-/var/cache/crosspod-vmlab}
BIN=$(realpath -m "${CROSSPOD_BIN_DIR:-$ROOT/target/release}")
SUITE=bookworm
MGMT_NET=192.168.56
NAT_NET=10.77.0
ADMIN_TOKEN=${CROSSPOD_ADMIN_TOKEN:-vagrant-admin-token}
BOOT_TIMEOUT=${CROSSPOD_VM_BOOT_TIMEOUT:-900}
NODES=(node1 node2 ext)
# Packages of the image beyond vagrant/packages.txt: a bootable systemd node with sshd and the
# kernel whose modules (openvswitch, 8021q) the kernel datapath needs.
# sudo and rsync serve the Vagrant box made from the same image (`vmlab.sh box`).
BASE_PKGS=(systemd-sysv udev kmod dbus procps openssh-server linux-image-cloud-amd64 less sudo rsync)

log() { echo "vmlab: $*" >&2; }
die() { echo "vmlab: $*" >&2; exit 1; }

# The Vagrantfile's NODES, for QEMU: field per node.
node_mgmt() { case $1 in node1) echo "$MGMT_NET.24" ;; node2) echo "$MGMT_NET.25" ;; ext) echo "$MGMT_NET.26" ;; esac; }
node_role() { case $1 in node1) echo controller ;; node2) echo compute ;; ext) echo upstream ;; esac; }
node_pod() { case $1 in node1) echo RegionOne ;; node2) echo RegionTwo ;; ext) echo "" ;; esac; }
node_mappings() { case $1 in node1) echo bridge:br-vlan ;; node2) echo bridge:br-vlan,extern:br-ext ;; ext) echo "" ;; esac; }
node_uplinks() { case $1 in node1) echo br-vlan:eth2 ;; node2) echo br-vlan:eth2,br-ext:eth3 ;; ext) echo br-up:eth2 ;; esac; }
node_mem() { case $1 in ext) echo 384 ;; *) echo 1024 ;; esac; }
node_index() { case $1 in node1) echo 1 ;; node2) echo 2 ;; ext) echo 3 ;; esac; }

sha() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- the image

base_packages() {
  { printf '%s\n' "${BASE_PKGS[@]}"; grep -v '^#' "$HERE/packages.txt" | grep .; } | sort -u | paste -sd, -
}

# The Debian part: mmdebstrap's tarball, keyed by suite and package list.
build_base() {
  local pkgs key tar
  pkgs=$(base_packages)
  key=$(printf '%s\n%s\n%s\n' "$SUITE" "$pkgs" "base-v1" | sha)
  tar="$CACHE/base-$key.tar"
  if [ -f "$tar" ]; then echo "$tar"; return; fi
  mkdir -p "$CACHE"
  log "building the Debian $SUITE root filesystem (mmdebstrap, $pkgs)"
  local t0=$SECONDS
  # Older bases: only the newest is needed to build images.
  rm -rf "$CACHE"/base-*.tar "$CACHE"/tmp-base-*
  # (mmdebstrap picks the output format from the name: .tar)
  mmdebstrap --quiet --variant=minbase --include="$pkgs" \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='echo "/dev/vda / ext4 defaults 0 1" > "$1"/etc/fstab' \
    "$SUITE" "$CACHE/tmp-base-$key.tar" >&2
  mv "$CACHE/tmp-base-$key.tar" "$tar"
  log "base image in $((SECONDS - t0)) s: $tar"
  echo "$tar"
}

image_inputs() {
  printf '%s\n' \
    "$BIN/crosspod-controller" "$BIN/crosspod-agent" "$BIN/crosspod" \
    "$ROOT/controller/systemd/crosspod-controller.service" \
    "$ROOT/agent/systemd/crosspod-agent.service" \
    "$HERE/provision.sh" "$HERE/packages.txt" "$HERE/plug-vm.sh" \
    "$HERE/image/firstboot.sh" "$HERE/image/crosspod-seed.service" \
    "$HERE/image/crosspod-provision.service" "$HERE/vmlab.sh"
}

# Prints the image directory (rootfs.img, vmlinuz, initrd.img), building it when its inputs
# changed. VARIANT `vagrant`: the same plus what a Vagrant box needs (the vagrant user with
# Vagrant's well-known insecure key and sudo, DHCP on eth0, host keys made at build time since
# no seed disk comes with `vagrant up`).
build_image() {
  # One builder at a time per cache (a test and a developer's lab may start together); the
  # lock is dropped before any VM starts, so no QEMU process inherits it.
  mkdir -p "$CACHE"
  exec 9>>"$CACHE/.lock"
  flock 9
  local rc=0
  build_image_locked "$@" || rc=$?
  flock -u 9
  exec 9>&-
  return $rc
}

build_image_locked() {
  local variant=${1:-} base key dir f
  for f in $(image_inputs); do
    [ -f "$f" ] || die "$f is missing (the binaries: cargo build --release --bins)"
  done
  base=$(build_base)
  key=$({ echo "$base $variant"; image_inputs | xargs sha256sum | cut -d' ' -f1; } | sha)
  dir="$CACHE/image${variant:+-$variant}-$key"
  if [ -f "$dir/rootfs.img" ]; then touch "$dir"; echo "$dir"; return; fi
  log "building the node image $key${variant:+ ($variant)}"
  local t0=$SECONDS tmp
  # Images of other inputs: those unused for two days go (a running lab's overlays need
  # theirs, so an image is never removed as soon as it is superseded).
  find "$CACHE" -maxdepth 1 -name "image${variant:+-$variant}-[0-9a-f]*" -mmin +2880 \
    -exec rm -rf {} + 2>/dev/null || true
  tmp="$dir.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp/rootfs"
  local r="$tmp/rootfs"
  # (--xattrs: file capabilities, e.g. ping's cap_net_raw, live in extended attributes)
  tar --xattrs --xattrs-include='*' -xf "$base" -C "$r"
  # The repository's layout under /opt/crosspod, as Vagrant syncs it to /vagrant.
  install -d "$r/opt/crosspod/target/release" "$r/opt/crosspod/vagrant" \
    "$r/opt/crosspod/controller/systemd" "$r/opt/crosspod/agent/systemd" \
    "$r/usr/local/lib/crosspod"
  install -s -m 0755 "$BIN/crosspod-controller" "$BIN/crosspod-agent" "$BIN/crosspod" \
    "$r/opt/crosspod/target/release/"
  install -m 0644 "$ROOT/controller/systemd/crosspod-controller.service" "$r/opt/crosspod/controller/systemd/"
  install -m 0644 "$ROOT/agent/systemd/crosspod-agent.service" "$r/opt/crosspod/agent/systemd/"
  install -m 0755 "$HERE/provision.sh" "$HERE/plug-vm.sh" "$r/opt/crosspod/vagrant/"
  install -m 0644 "$HERE/packages.txt" "$r/opt/crosspod/vagrant/"
  install -m 0755 "$HERE/image/firstboot.sh" "$r/usr/local/lib/crosspod/"
  install -m 0644 "$HERE/image/crosspod-seed.service" "$HERE/image/crosspod-provision.service" \
    "$r/etc/systemd/system/"
  systemctl --root="$r" --quiet enable crosspod-seed.service crosspod-provision.service \
    systemd-networkd.service ssh.service
  # Nothing on these VMs needs them, and each costs boot time under TCG.
  systemctl --root="$r" --quiet mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer getty@tty1.service 2>/dev/null || true
  if [ "$variant" = vagrant ]; then
    local key_pub
    key_pub=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1)
    [ -n "$key_pub" ] || key_pub=$(find / -path '*vagrant*/keys/vagrant.pub' -print -quit 2>/dev/null)
    [ -n "$key_pub" ] || die "Vagrant's insecure public key not found (apt-get install vagrant)"
    chroot "$r" useradd -m -s /bin/bash vagrant
    install -d -m 0700 -o "$(chroot "$r" id -u vagrant)" -g "$(chroot "$r" id -g vagrant)" "$r/home/vagrant/.ssh"
    install -m 0600 -o "$(chroot "$r" id -u vagrant)" -g "$(chroot "$r" id -g vagrant)" "$key_pub" \
      "$r/home/vagrant/.ssh/authorized_keys"
    echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$r/etc/sudoers.d/vagrant"
    chmod 0440 "$r/etc/sudoers.d/vagrant"
    printf '[Match]\nName=eth0\n[Network]\nDHCP=ipv4\n' > "$r/etc/systemd/network/90-eth0-dhcp.network"
    ssh-keygen -q -t ed25519 -N '' -C vagrant-box -f "$r/etc/ssh/ssh_host_ed25519_key"
    echo "HostKey /etc/ssh/ssh_host_ed25519_key" > "$r/etc/ssh/sshd_config.d/crosspod-hostkey.conf"
  fi
  cp "$(ls "$r"/boot/vmlinuz-* | sort -V | tail -1)" "$tmp/vmlinuz"
  cp "$(ls "$r"/boot/initrd.img-* | sort -V | tail -1)" "$tmp/initrd.img"
  # Room for provision.sh's copy of the binaries, the store, logs: twice the tree plus 1 GiB
  # (a sparse file; each node writes into its own qcow2 overlay).
  local size=$(( $(du -sm "$r" | cut -f1) * 2 + 1024 ))
  mkfs.ext4 -q -F -L crosspod-root -d "$r" "$tmp/rootfs.img" "${size}M" >&2
  rm -rf "$r"
  mv "$tmp" "$dir"
  log "node image in $((SECONDS - t0)) s: $dir"
  echo "$dir"
}

# ---------------------------------------------------------------- accelerator

# kvm when a KVM guest gets as far as mounting its root (a probe boot without a root disk
# panics within seconds), tcg otherwise. Cached per QEMU version and host kernel.
detect_accel() {
  local want=${CROSSPOD_VM_ACCEL:-auto} img=$1
  case "$want" in kvm|tcg) echo "$want"; return ;; auto) ;; *) die "CROSSPOD_VM_ACCEL=$want: kvm, tcg or auto" ;; esac
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then echo tcg; return; fi
  local key cached out
  key=$({ qemu-system-x86_64 --version | head -1; uname -r; } | sha)
  cached="$CACHE/accel-$key"
  if [ -f "$cached" ]; then cat "$cached"; return; fi
  out=$(mktemp)
  timeout 40 qemu-system-x86_64 -accel kvm -m 256 -smp 1 -display none -no-reboot \
    -serial "file:$out" -kernel "$img/vmlinuz" \
    -append "console=ttyS0 panic=-1 root=/dev/nonexistent" >/dev/null 2>&1 || true
  if grep -q "Kernel panic\|VFS:" "$out"; then echo kvm > "$cached"; else echo tcg > "$cached"; fi
  rm -f "$out"
  cat "$cached"
}

# ---------------------------------------------------------------- run directory

free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
  die "no free port"
}

write_ssh_config() {
  {
    cat <<CFG
Host node1 node2 ext
  User root
  HostName 127.0.0.1
  IdentityFile $RUN/id_ed25519
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 10
  ServerAliveInterval 5
  ServerAliveCountMax 4
  ControlMaster auto
  ControlPath $RUN/ssh-%n.ctl
  ControlPersist 600
CFG
    for n in "${NODES[@]}"; do
      printf 'Host %s\n  Port %s\n' "$n" "$(get "SSH_PORT_$n")"
    done
  } > "$RUN/ssh_config"
}

get() { sed -n "s/^$1=//p" "$RUN/lab.env" 2>/dev/null | tail -1; }
put() { echo "$1=$2" >> "$RUN/lab.env"; }

make_seed() { # NODE
  local n=$1 s="$RUN/seed-$1" hosts=""
  rm -rf "$s"; mkdir -p "$s/pki"
  for m in "${NODES[@]}"; do hosts+="$(node_mgmt "$m") $m"$'\n'; done
  cat > "$s/node.env" <<ENV
CROSSPOD_NODE=$n
CROSSPOD_ROLE=$(node_role "$n")
CROSSPOD_POD=$(node_pod "$n")
CROSSPOD_CONTROLLER_HOST=$(node_mgmt node1)
CROSSPOD_BRIDGE_MAPPINGS=$(node_mappings "$n")
CROSSPOD_UPLINKS=$(node_uplinks "$n")
CROSSPOD_NETWORK_VLAN_RANGES=bridge:2001:3000,extern:3001:4000
CROSSPOD_AGENT_NODES='node1 node2'
CROSSPOD_ADMIN_TOKEN=$ADMIN_TOKEN
CROSSPOD_MGMT_IP=$(node_mgmt "$n")
CROSSPOD_NAT_IP=$NAT_NET.15/24
CROSSPOD_HOSTS='$hosts'
ENV
  cp "$RUN/id_ed25519.pub" "$s/authorized_keys"
  cp "$RUN/pki/ca.pem" "$s/pki/"
  if [ "$n" = node1 ]; then cp "$RUN/pki/controller.pem" "$RUN/pki/controller.key" "$s/pki/"; fi
  if [ "$n" != ext ]; then cp "$RUN/pki/$n.pem" "$RUN/pki/$n.key" "$s/pki/"; fi
  mkfs.ext4 -q -F -L crosspod-seed -d "$s" "$RUN/$n.seed" 8M >/dev/null
  rm -rf "$s"
}

# NIC options: eth0 user-mode, eth1 management, eth2/eth3 as the Vagrantfile.
link() { # NAME THIS-END OTHER-END -> a dgram netdev between two unix sockets
  echo "dgram,id=$1,local.type=unix,local.path=$RUN/$1-$2.sock,remote.type=unix,remote.path=$RUN/$1-$3.sock"
}

qemu_args() { # NODE
  local n=$1 i fwd img accel
  i=$(node_index "$n"); img=$(get IMAGE); accel=$(get ACCEL)
  fwd="hostfwd=tcp:127.0.0.1:$(get "SSH_PORT_$n")-:22"
  if [ "$n" = node1 ]; then
    fwd+=",hostfwd=tcp:127.0.0.1:$(get NEUTRON_PORT)-:20001,hostfwd=tcp:127.0.0.1:$(get TRICIRCLE_PORT)-:19999"
  fi
  local a=(-name "$n" -m "$(node_mem "$n")" -smp 1 -display none -daemonize
    -pidfile "$RUN/$n.pid" -serial "file:$RUN/$n.console"
    -monitor "unix:$RUN/$n.monitor,server,nowait"
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img"
    -append "console=ttyS0 root=/dev/vda rw net.ifnames=0 systemd.hostname=$n crosspod.node=$n panic=-1 systemd.show_status=error"
    -drive "file=$RUN/$n.qcow2,if=virtio,format=qcow2"
    -drive "file=$RUN/$n.seed,if=virtio,format=raw,readonly=on"
    -netdev "user,id=nat,restrict=on,net=$NAT_NET.0/24,host=$NAT_NET.2,$fwd"
    -device "virtio-net-pci,netdev=nat,mac=52:54:00:0$i:00:00,addr=0x3")
  if [ "$accel" = kvm ]; then a+=(-accel kvm); else a+=(-accel tcg); fi
  case $n in
    node1)
      a+=(-netdev "$(link mgmt node1 node2)" -device "virtio-net-pci,netdev=mgmt,mac=52:54:00:01:00:01,addr=0x4")
      a+=(-netdev "$(link prov node1 node2)" -device "virtio-net-pci,netdev=prov,mac=52:54:00:01:00:02,addr=0x5")
      ;;
    node2)
      a+=(-netdev "$(link mgmt node2 node1)" -device "virtio-net-pci,netdev=mgmt,mac=52:54:00:02:00:01,addr=0x4")
      a+=(-netdev "$(link prov node2 node1)" -device "virtio-net-pci,netdev=prov,mac=52:54:00:02:00:02,addr=0x5")
      a+=(-netdev "$(link extn node2 ext)" -device "virtio-net-pci,netdev=extn,mac=52:54:00:02:00:03,addr=0x6")
      ;;
    ext)
      # Vagrant gives ext a management NIC too; nothing here needs it, so it is a NIC on a
      # hub of its own, keeping the numbering (eth2 is the external network).
      a+=(-netdev "hubport,id=mgmt,hubid=1" -device "virtio-net-pci,netdev=mgmt,mac=52:54:00:03:00:01,addr=0x4")
      a+=(-netdev "$(link extn ext node2)" -device "virtio-net-pci,netdev=extn,mac=52:54:00:03:00:03,addr=0x5")
      ;;
  esac
  printf '%s\n' "${a[@]}"
}

alive() { local p; p=$(cat "$RUN/$1.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

on() { local n=$1; shift; ssh -F "$RUN/ssh_config" "$n" "$@"; }

wait_until() { # SECONDS WHAT CMD...
  local limit=$1 what=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
      log "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 2
  done
}

node_ready() { # NODE: sshd answers and the first boot's provisioning is done
  alive "$1" || { log "$1's QEMU is gone; its console:"; tail -30 "$RUN/$1.console" >&2; exit 1; }
  on "$1" test -f /var/lib/crosspod-seed/provisioned
}

api_ready() {
  curl -sf -o /dev/null -H "X-Auth-Token: $ADMIN_TOKEN" "http://127.0.0.1:$(get NEUTRON_PORT)/v2.0/networks"
}

cmd_up() {
  if [ -f "$RUN/lab.env" ] && alive node1 && alive node2 && alive ext; then
    log "already up ($RUN)"; return
  fi
  [ ! -e "$RUN" ] || cmd_down
  local t0=$SECONDS img accel
  if [ -z "${CROSSPOD_VMLAB_NO_DEPS:-}" ]; then bash "$ROOT/scripts/install-vm-deps.sh" >&2; fi
  img=$(build_image)
  accel=$(detect_accel "$img")
  mkdir -p "$RUN"
  : > "$RUN/lab.env"
  put IMAGE "$img"; put ACCEL "$accel"
  for n in "${NODES[@]}"; do put "SSH_PORT_$n" "$(free_port)"; done
  put NEUTRON_PORT "$(free_port)"; put TRICIRCLE_PORT "$(free_port)"
  ssh-keygen -q -t ed25519 -N '' -C crosspod-vmlab -f "$RUN/id_ed25519"
  write_ssh_config
  CROSSPOD_BIN="$BIN/crosspod" CROSSPOD_PKI_DIR="$RUN/pki" CROSSPOD_CONTROLLER_IP="$(node_mgmt node1)" \
    CROSSPOD_AGENT_NODES="node1 node2" bash "$HERE/make-pki.sh" >/dev/null
  for n in "${NODES[@]}"; do
    make_seed "$n"
    qemu-img create -q -f qcow2 -F raw -b "$img/rootfs.img" "$RUN/$n.qcow2"
  done
  log "booting ${NODES[*]} ($accel) in $RUN"
  for n in "${NODES[@]}"; do
    local args
    mapfile -t args < <(qemu_args "$n")
    qemu-system-x86_64 "${args[@]}"
  done
  put BOOTED_AT "$(date +%s)"
  for n in "${NODES[@]}"; do
    wait_until "$BOOT_TIMEOUT" "$n to boot and provision" node_ready "$n" || { tail -40 "$RUN/$n.console" >&2; exit 1; }
    log "$n is up ($((SECONDS - t0)) s)"
  done
  wait_until 300 "the controller's API" api_ready || exit 1
  put UP_SECONDS "$((SECONDS - t0))"
  log "up in $((SECONDS - t0)) s; Neutron http://127.0.0.1:$(get NEUTRON_PORT), ssh: $0 ssh node1"
}

cmd_down() {
  [ -d "$RUN" ] || { log "nothing to take down ($RUN)"; return 0; }
  local n p
  for n in "${NODES[@]}"; do
    [ -S "$RUN/ssh-$n.ctl" ] && ssh -F "$RUN/ssh_config" -O exit "$n" >/dev/null 2>&1 || true
  done
  for n in "${NODES[@]}"; do
    p=$(cat "$RUN/$n.pid" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
      log "stopped $n (pid $p)"
    fi
  done
  rm -rf "$RUN"
}

cmd_status() {
  [ -f "$RUN/lab.env" ] || { echo "vmlab: down ($RUN)"; return 3; }
  local n rc=0
  echo "run dir $RUN, accelerator $(get ACCEL), image $(get IMAGE)"
  echo "neutron http://127.0.0.1:$(get NEUTRON_PORT)  tricircle http://127.0.0.1:$(get TRICIRCLE_PORT)"
  for n in "${NODES[@]}"; do
    if ! alive "$n"; then echo "$n: not running"; rc=1; continue; fi
    local units="openvswitch-switch"
    case $n in node1) units+=" crosspod-controller crosspod-agent" ;; node2) units+=" crosspod-agent" ;; esac
    local st
    # shellcheck disable=SC2086
    st=$(on "$n" "systemctl is-active $units | paste -sd' ' -" 2>/dev/null) || st="ssh not answering"
    echo "$n: pid $(cat "$RUN/$n.pid"), ssh port $(get "SSH_PORT_$n"), $units: $st"
  done
  return $rc
}

# A vagrant-libvirt box of the same image (`vagrant box add`-able): qcow2 disk, the kernel and
# initrd for direct boot, and a box Vagrantfile pointing libvirt at them.
cmd_box() {
  local img out tmp size
  img=$(build_image vagrant)
  out="$CACHE/crosspod-vmlab.box"
  tmp=$(mktemp -d "$CACHE/box.XXXXXX")
  qemu-img convert -O qcow2 "$img/rootfs.img" "$tmp/box.img"
  cp "$img/vmlinuz" "$img/initrd.img" "$tmp/"
  size=$(( ($(stat -c %s "$img/rootfs.img") + 1073741823) / 1073741824 ))
  printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' "$size" > "$tmp/metadata.json"
  cat > "$tmp/Vagrantfile" <<'BOX'
# crosspod's lab box (vagrant/vmlab.sh box): the kernel boots directly, as in the QEMU lab.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "console=ttyS0 root=/dev/vda rw net.ifnames=0 systemd.show_status=error"
  end
end
BOX
  tar -C "$tmp" -cf "$out.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  echo "$out"
}

cmd_reboot() { # NODE
  local n=$1 before
  before=$(on "$n" cat /proc/sys/kernel/random/boot_id)
  on "$n" "systemctl reboot" || true
  ssh -F "$RUN/ssh_config" -O exit "$n" >/dev/null 2>&1 || true
  local t0=$SECONDS
  boot_changed() { local b; b=$(on "$n" cat /proc/sys/kernel/random/boot_id) && [ "$b" != "$before" ]; }
  wait_until "$BOOT_TIMEOUT" "$n to come back" boot_changed || exit 1
  log "$n rebooted in $((SECONDS - t0)) s"
}

# The whole file is read before anything runs (main is called on the last line), so editing
# the script while a lab is up does not derail the running copy.
main() {
  case "${1:-}" in
    image) build_image ;;
    base) build_base ;;
    box) cmd_box ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    ssh) shift; [ $# -ge 1 ] || die "usage: $0 ssh NODE [CMD]"; on "$@" ;;
    reboot) [ $# -eq 2 ] || die "usage: $0 reboot NODE"; cmd_reboot "$2" ;;
    env)
      [ -f "$RUN/lab.env" ] || die "not up ($RUN)"
      echo "export CROSSPOD_VMLAB='$RUN'"
      echo "export CROSSPOD_NEUTRON_URL='http://127.0.0.1:$(get NEUTRON_PORT)'"
      echo "export CROSSPOD_TRICIRCLE_URL='http://127.0.0.1:$(get TRICIRCLE_PORT)'"
      echo "export CROSSPOD_ADMIN_TOKEN='$ADMIN_TOKEN'"
      ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
}

main "$@"; exit

#!/bin/sh
# udhcpc script of crosspod's lab VMs (`crosspod vm boot`, agent/tests/dhcp.rs): applies a
# lease inside the VM's namespace. Run as `ip netns exec <vm> udhcpc -s <this script> ...`, so
# /etc/resolv.conf here is the VM's own /etc/netns/<vm>/resolv.conf (bind-mounted by ip netns
# exec, which must exist before the client starts): the host's file is never written.
# Option 121 (RFC 3442) wins over option 3 when present; MTU is option 26.
# Each event is appended to $CROSSPOD_DHCP_LOG (if set) with what it applied.
set -u
ev=${1:-}
ifc=${interface:-eth0}
log() { [ -n "${CROSSPOD_DHCP_LOG:-}" ] && echo "$*" >> "$CROSSPOD_DHCP_LOG"; return 0; }
case "$ev" in
deconfig)
    ip -4 addr flush dev "$ifc"
    ip link set "$ifc" up
    log "deconfig"
    ;;
bound|renew)
    prefix=${mask:-32}
    # A changed address replaces the old one (a renewal normally keeps it).
    for old in $(ip -4 -o addr show dev "$ifc" | awk '{print $4}'); do
        [ "$old" = "$ip/$prefix" ] || ip addr del "$old" dev "$ifc"
    done
    ip addr replace "$ip/$prefix" dev "$ifc"
    [ -n "${mtu:-}" ] && ip link set "$ifc" mtu "$mtu"
    ip -4 route flush dev "$ifc" proto static 2>/dev/null || true
    ip -4 route flush dev "$ifc" proto boot 2>/dev/null || true
    if [ -n "${staticroutes:-}" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            ip route replace "$1" via "$2" dev "$ifc" proto static
            shift 2
        done
    elif [ -n "${router:-}" ]; then
        for r in $router; do
            ip route replace default via "$r" dev "$ifc" proto static
            break
        done
    fi
    : > /etc/resolv.conf
    for d in ${dns:-}; do echo "nameserver $d" >> /etc/resolv.conf; done
    log "$ev ip=$ip/$prefix router=${router:-} dns=${dns:-} mtu=${mtu:-} staticroutes=${staticroutes:-} serverid=${serverid:-} lease=${lease:-}"
    ;;
leasefail|nak)
    log "$ev"
    ;;
esac
exit 0

//! UDP sockets opened inside a namespace and bound to one of its interfaces: how the agent's
//! DHCP servers listen on `:67` in every `qdhcp-` namespace without a thread or process each.
//! A socket keeps the namespace it was created in, so only its creation needs the namespace
//! switch (on a dedicated thread, as everything in [`crate::netns`]).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::netns::{self, Netns};

/// Opens a non-blocking IPv4 UDP socket inside `ns`, bound to `0.0.0.0:port` and to the device
/// `ifname` (`SO_BINDTODEVICE`), with `SO_BROADCAST` so it can answer clients that have no
/// address yet. The socket can then be used from any thread (and handed to tokio).
///
/// With `no_checksum` the datagrams it sends carry UDP checksum 0 ("none", legal in IPv4,
/// `SO_NO_CHECK`). DHCP needs it on veths behind a userspace (netdev) OVS datapath: the kernel
/// leaves the checksum to an offload that never happens there, and DHCP clients, which read
/// raw packets, drop the reply as corrupt (Neutron fills it with an iptables CHECKSUM rule).
pub fn bind_in(ns: &Netns, ifname: &str, port: u16, no_checksum: bool) -> Result<UdpSocket> {
    crate::link::validate_ifname(ifname)?;
    let name = ns.display_name().to_string();
    let ifname = ifname.to_string();
    netns::run_in(ns, move || -> std::io::Result<UdpSocket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_broadcast(true)?;
        s.bind_device(Some(ifname.as_bytes()))?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        s.set_nonblocking(true)?;
        if no_checksum {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a socket we own, with a c_int option value.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_NO_CHECK,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(s.into())
    })?
    .map_err(|source| Error::Netns {
        op: "open a UDP socket bound to a device inside",
        ns: name,
        source,
    })
}

/// Opens a non-blocking IPv6-only UDP socket inside `ns`, bound to `[::]:port` and to the device
/// `ifname`, member of the multicast group `group` on that device (DHCPv6 servers:
/// `ff02::1:2`, RFC 8415 §7.1). Multicast loopback is off.
pub fn bind6_in(
    ns: &Netns,
    ifname: &str,
    port: u16,
    group: std::net::Ipv6Addr,
) -> Result<UdpSocket> {
    crate::link::validate_ifname(ifname)?;
    let ifindex = crate::Handle::new(ns)?.link_index(ifname)?;
    let name = ns.display_name().to_string();
    let ifname = ifname.to_string();
    netns::run_in(ns, move || -> std::io::Result<UdpSocket> {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_only_v6(true)?;
        s.bind_device(Some(ifname.as_bytes()))?;
        s.bind(&std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0).into())?;
        s.join_multicast_v6(&group, ifindex)?;
        s.set_multicast_loop_v6(false)?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    })?
    .map_err(|source| Error::Netns {
        op: "open an IPv6 UDP socket bound to a device inside",
        ns: name,
        source,
    })
}

//! The one ethtool setting crosspod needs: transmit checksum offload of a veth end, through the
//! `SIOCETHTOOL` ioctl inside the namespace (no `ethtool` process).
//!
//! Behind ovs-vswitchd's userspace (netdev) datapath, a veth's "offloaded" TCP/UDP checksum is
//! never filled in, and receivers drop the packets. IPv4 DHCP sidesteps it with checksum 0, which
//! IPv6 forbids (RFC 8200 §8.1), so the DHCPv6 server's interface computes its checksums itself.

use crate::error::{Error, Result};
use crate::netns::{self, Netns};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

fn ioctl(fd: libc::c_int, ifname: &str, v: &mut EthtoolValue) -> std::io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: v,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Turns transmit checksum offload of `ifname` in `ns` on or off, if it differs; returns
/// whether it changed.
pub fn set_tx_checksum(ns: &Netns, ifname: &str, on: bool) -> Result<bool> {
    crate::link::validate_ifname(ifname)?;
    let name = ns.display_name().to_string();
    let dev = ifname.to_string();
    let changed = netns::run_in(ns, move || -> std::io::Result<bool> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        let mut v = EthtoolValue {
            cmd: ETHTOOL_GTXCSUM,
            data: 0,
        };
        ioctl(fd, &dev, &mut v)?;
        if (v.data != 0) == on {
            return Ok(false);
        }
        let mut v = EthtoolValue {
            cmd: ETHTOOL_STXCSUM,
            data: u32::from(on),
        };
        ioctl(fd, &dev, &mut v)?;
        Ok(true)
    })?
    .map_err(|source| Error::Netns {
        op: "set the transmit checksum offload of an interface inside",
        ns: name.clone(),
        source,
    })?;
    if changed {
        tracing::info!(netns = %name, ifname, on, "set transmit checksum offload");
    }
    Ok(changed)
}

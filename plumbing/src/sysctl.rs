//! Per-namespace sysctls (forwarding): `/proc/sys/net` shows the namespace of the thread that
//! opens it, so reads and writes run on a dedicated thread inside the namespace.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::netns::{run_in, Netns};

fn path(key: &str) -> Result<PathBuf> {
    let ok = key.starts_with("net.")
        && !key.contains("..")
        && !key.contains('/')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(Error::InvalidName {
            what: "sysctl",
            name: key.to_string(),
            reason: "only per-namespace net.* keys of letters, digits, '.', '_' and '-'",
        });
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

/// Reads a `net.*` sysctl in `ns` (trimmed).
pub fn get(ns: &Netns, key: &str) -> Result<String> {
    let p = path(key)?;
    run_in(ns, || std::fs::read_to_string(&p))?
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Sysctl {
            key: key.to_string(),
            ns: ns.display_name().to_string(),
            source,
        })
}

/// Writes a `net.*` sysctl in `ns` if it differs; returns whether it was changed.
pub fn set(ns: &Netns, key: &str, value: &str) -> Result<bool> {
    let p = path(key)?;
    let changed = run_in(ns, || -> std::io::Result<bool> {
        if std::fs::read_to_string(&p)?.trim() == value {
            return Ok(false);
        }
        std::fs::write(&p, value)?;
        Ok(true)
    })?
    .map_err(|source| Error::Sysctl {
        key: key.to_string(),
        ns: ns.display_name().to_string(),
        source,
    })?;
    if changed {
        tracing::info!(netns = %ns, key, value, "set sysctl");
    }
    Ok(changed)
}

/// Turns IPv4 and/or IPv6 forwarding on (or off) in `ns`, as a router namespace needs.
/// Returns whether anything changed.
pub fn set_forwarding(ns: &Netns, ipv4: bool, ipv6: bool) -> Result<bool> {
    let v = |b: bool| if b { "1" } else { "0" };
    let a = set(ns, "net.ipv4.ip_forward", v(ipv4))?;
    let b = set(ns, "net.ipv6.conf.all.forwarding", v(ipv6))?;
    Ok(a || b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_net_keys_map_to_proc_sys() {
        assert_eq!(
            path("net.ipv4.conf.qr-1.forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/qr-1/forwarding")
        );
        for bad in ["kernel.hostname", "net.ipv4/../x", "net..x", "net.ipv4 .x"] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }
}

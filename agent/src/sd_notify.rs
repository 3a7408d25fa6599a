//! systemd's notify protocol (sd_notify(3)): READY, STATUS and watchdog pings over the datagram
//! socket named by `$NOTIFY_SOCKET`. A no-op where the agent was not started by systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A handle on the notify socket, if systemd gave us one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, path))
        });
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Sends one notify message such as `READY=1` or `STATUS=...`; errors are logged, not fatal:
    /// a lost notification must never stop the data plane.
    pub fn notify(&self, msg: &str) {
        let Some((sock, path)) = &self.socket else {
            return;
        };
        let res = if let Some(abstract_name) = path.strip_prefix('@') {
            send_abstract(sock, abstract_name, msg)
        } else {
            sock.send_to(msg.as_bytes(), path).map(|_| ())
        };
        if let Err(e) = res {
            tracing::warn!(socket = %path, error = %e, "sd_notify failed");
        }
    }

    /// Tells systemd the first full reconcile is done.
    pub fn ready(&self) {
        self.notify("READY=1");
    }

    /// Pings the watchdog.
    pub fn watchdog_ping(&self) {
        self.notify("WATCHDOG=1");
    }

    /// How often to ping: half of what systemd asked for, if it asked.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &str, msg: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sock.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_real_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), path.display().to_string())),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.ready();
        n.watchdog_ping();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn abstract_sockets_work_too() {
        let name = format!("crosspod-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), format!("@{name}"))),
            watchdog: None,
        };
        n.notify("STATUS=reconciling");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=reconciling");
        assert_eq!(n.watchdog_interval(), None);
    }
}

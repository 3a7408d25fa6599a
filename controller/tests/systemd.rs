//! The shipped unit is Type=notify with WatchdogSec: the binary must say READY=1 once both
//! APIs listen, then keep sending WATCHDOG=1. Checked with a real notify socket.
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sd_notify_ready_and_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::fs::write(dir.path().join("tokens"), "t p admin\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_crosspod-controller"))
        .args([
            "--bind",
            "127.0.0.1",
            "--neutron-port",
            "0",
            "--tricircle-port",
            "0",
        ])
        .arg("--database")
        .arg(format!("sqlite://{}", dir.path().join("c.db").display()))
        .arg("--tokens-file")
        .arg(dir.path().join("tokens"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Kill(child);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from the controller");
    assert_eq!(&buf[..n], b"READY=1");
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        let n = sock.recv(&mut buf).expect("WATCHDOG=1 pings");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        pings += 1;
    }
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "pings come about every 100 ms"
    );
}

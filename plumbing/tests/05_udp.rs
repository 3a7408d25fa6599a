//! UDP sockets opened inside a namespace and bound to one device (the agent's DHCP servers):
//! broadcasts in and out of that device only, and a second listener on it is refused.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use common::{require_root, Lab};
use plumbing::udp::bind_in;

fn recv_within(s: &UdpSocket, d: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + d;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if let Ok(n) = s.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_device_bound_socket_hears_and_answers_broadcasts_on_its_device_only() {
    require_root();
    let lab = Lab::new();
    let server = bind_in(&lab.router.ns(), "qr", 6767, true).unwrap();
    let vm = bind_in(&lab.vm.ns(), "eth0", 6868, false).unwrap();
    let ext = bind_in(&lab.ext.ns(), "eth0", 6868, false).unwrap();
    let bcast = |p| SocketAddrV4::new(Ipv4Addr::BROADCAST, p);

    vm.send_to(b"from-vm", bcast(6767)).unwrap();
    assert_eq!(
        recv_within(&server, Duration::from_secs(2)).as_deref(),
        Some(&b"from-vm"[..])
    );
    // The same port on the router's other leg is not this socket's.
    ext.send_to(b"from-ext", bcast(6767)).unwrap();
    assert_eq!(recv_within(&server, Duration::from_millis(500)), None);
    // Answers leave by the bound device: the VM hears them, the other side does not.
    server.send_to(b"answer", bcast(6868)).unwrap();
    assert_eq!(
        recv_within(&vm, Duration::from_secs(2)).as_deref(),
        Some(&b"answer"[..])
    );
    assert_eq!(recv_within(&ext, Duration::from_millis(500)), None);

    // One listener per device and port; a missing device is an error, not a silent socket.
    assert!(bind_in(&lab.router.ns(), "qr", 6767, true).is_err());
    assert!(bind_in(&lab.router.ns(), "nope0", 6767, true).is_err());
}

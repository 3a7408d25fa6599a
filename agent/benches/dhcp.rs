//! DHCP benchmark (not a timed test): `cargo bench -p agent --bench dhcp`. Prints a table.
//!
//! 1. The real `crosspod-agent` daemon (desired state from a file, ovsdb-server without
//!    ovs-vswitchd) goes from no DHCP server to N (default 1,000; `CROSSPOD_DHCP_BENCH_N`): the
//!    time until every server has answered a DISCOVER, the agent's RSS and threads before and
//!    after, and the processes it started (none is the design: one socket and task per network).
//! 2. A DHCP exchange's round trip (DISCOVER→OFFER and the full DISCOVER/OFFER/REQUEST/ACK),
//!    p50 and p99, against one of the agent's servers and against one `dnsmasq` serving one
//!    network in its own namespace, same machine, same run, same client (a UDP socket bound to
//!    the node-side end of each server's veth); plus dnsmasq's RSS, the cost per network of
//!    Neutron's process-per-network model.
//! 3. Teardown: the servers leave the desired state; time until every namespace is gone.
//!
//! Needs root, ovsdb-server and dnsmasq (scripts/install-deps.sh).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use ovs::sandbox::{Sandbox, SandboxOptions};
use plumbing::{netns, Netns, VethEnd, VethSpec};
use serde_json::{json, Value};

mod support;
use socket2::{Domain, Protocol, Socket, Type};
use support::{children, row, status_kb, Cleanup};

fn net_id(i: usize) -> String {
    format!("00000000-0000-4000-9000-{i:012}")
}

fn host_mac(i: usize) -> [u8; 6] {
    [0xfa, 0x16, 0x3e, 0xc0, (i >> 8) as u8, (i & 0xff) as u8]
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn state(n: usize, tag: &str) -> Value {
    let mut dhcp = serde_json::Map::new();
    for i in 0..n {
        let id = net_id(i);
        let (a, b) = (i / 250, i % 250);
        dhcp.insert(id.clone(), json!({
            "network_id": id, "port_id": format!("dp-{i}"), "namespace": format!("qdhcp-{id}"),
            "bridge": "br-vlan", "tag": 1 + i, "mac": format!("fa:16:3e:d0:{:02x}:{:02x}", i >> 8, i & 0xff),
            "ns_ifname": format!("ns-{tag}{i}"), "ovs_ifname": format!("td{tag}{i}"),
            "mtu": 1450, "lease_seconds": 86400,
            "subnets": [{"subnet_id": format!("s{i}"), "cidr": format!("10.{a}.{b}.0/24"),
                         "server_address": format!("10.{a}.{b}.2"), "router": format!("10.{a}.{b}.1"),
                         "dns_nameservers": ["10.255.0.53"], "host_routes": []}],
            "hosts": [{"mac": mac_str(host_mac(i)), "ip": format!("10.{a}.{b}.11"),
                       "subnet_id": format!("s{i}"), "port_id": format!("vm-{i}")}]
        }));
    }
    json!({"node": "n1", "pod": "RegionOne", "revision": 1 + n as u64,
           "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
           "dhcp": dhcp})
}

/// A client socket on `dev` (in the current thread's namespace): `:68`, broadcast, bound to
/// the device, so it sees exactly the replies of the server at the other end of that veth.
fn client(dev: &str) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(dev.as_bytes()))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn message(
    kind: MessageType,
    mac: [u8; 6],
    xid: u32,
    req: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    // Broadcast flag: dnsmasq would otherwise unicast to an address the client does not have.
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::InterfaceMtu,
    ]));
    if let Some((ip, server)) = req {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    }
    m.to_vec().unwrap()
}

fn send(s: &UdpSocket, bytes: &[u8]) {
    let _ = s.send_to(bytes, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
}

/// The reply to `xid` of type `want`, if one came.
fn recv(s: &UdpSocket, xid: u32, want: MessageType) -> Option<Message> {
    let mut buf = [0u8; 1500];
    while let Ok(n) = s.recv(&mut buf) {
        if let Ok(m) = Message::from_bytes(&buf[..n]) {
            if m.xid() == xid && m.opts().msg_type() == Some(want) {
                return Some(m);
            }
        }
    }
    None
}

fn wait_reply(s: &UdpSocket, xid: u32, want: MessageType, timeout: Duration) -> Option<Message> {
    let deadline = Instant::now() + timeout;
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        if let Some(m) = recv(s, xid, want) {
            return Some(m);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
    }
}

/// One DISCOVER/OFFER/REQUEST/ACK: (DISCOVER→OFFER, whole exchange).
fn dora(s: &UdpSocket, mac: [u8; 6], xid: u32, timeout: Duration) -> Option<(Duration, Duration)> {
    let t0 = Instant::now();
    send(s, &message(MessageType::Discover, mac, xid, None));
    let offer = wait_reply(s, xid, MessageType::Offer, timeout)?;
    let t1 = t0.elapsed();
    let server = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => return None,
    };
    send(
        s,
        &message(
            MessageType::Request,
            mac,
            xid,
            Some((offer.yiaddr(), server)),
        ),
    );
    wait_reply(s, xid, MessageType::Ack, timeout)?;
    Some((t1, t0.elapsed()))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

/// Enters `ns` for the rest of this thread's life (the bench's client thread only).
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on this dedicated thread.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

fn main() {
    let n: usize = std::env::var("CROSSPOD_DHCP_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tag = format!("{}", std::process::id() % 1000);
    let prefix = format!("cpd{tag}-");
    let node = format!("{prefix}node");
    netns::create(&node).expect("creating the node namespace (needs root)");
    let mut clean = Cleanup {
        prefix: prefix.clone(),
        procs: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let sb = Sandbox::start(SandboxOptions {
        vswitchd: false,
        netns: Some(node.clone()),
        clustered: false,
    })
    .expect("ovsdb-server");
    let file = clean.dir.path().join("desired.json");
    let write = |v: &Value| {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(v).unwrap()).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write(&state(0, &tag));
    let agent = Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
        .args(["--pod", "RegionOne", "--node", "n1", "--desired-file"])
        .arg(&file)
        .args([
            "--ovsdb",
            &sb.db_arg(),
            "--node-netns",
            &node,
            "--netns-prefix",
            &prefix,
        ])
        .args([
            "--bridge-mappings",
            "bridge:br-vlan",
            "--datapath-type",
            "netdev",
        ])
        .args(["--metrics-bind", ""])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(clean.dir.path().join("agent.log")).unwrap())
        .spawn()
        .expect("crosspod-agent");
    let pid = agent.id();
    clean.procs.push(agent);
    std::thread::sleep(Duration::from_secs(2));
    let rss0 = status_kb(pid, "VmRSS:");
    let thr0 = status_kb(pid, "Threads:");
    let kids0 = children(pid);

    println!("| {:<66} | {:>22} |", "what", "value");
    println!("|{}|{}|", "-".repeat(68), "-".repeat(24));

    // 1. From 0 to n servers; a client thread in the node namespace DISCOVERs on every
    //    node-side veth end until each server has answered.
    let t0 = Instant::now();
    write(&state(n, &tag));
    let tag2 = tag.clone();
    let node2 = node.clone();
    let answered = std::thread::spawn(move || {
        enter(&node2);
        let mut socks: Vec<Option<UdpSocket>> = (0..n).map(|_| None).collect();
        let mut done: Vec<Option<Duration>> = vec![None; n];
        let deadline = Instant::now() + Duration::from_secs(600);
        while done.iter().any(Option::is_none) && Instant::now() < deadline {
            for i in 0..n {
                if done[i].is_some() {
                    continue;
                }
                if socks[i].is_none() {
                    socks[i] = client(&format!("td{tag2}{i}")).ok();
                }
                if let Some(s) = &socks[i] {
                    send(
                        s,
                        &message(MessageType::Discover, host_mac(i), i as u32, None),
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            for i in 0..n {
                if let (None, Some(s)) = (done[i], &socks[i]) {
                    if recv(s, i as u32, MessageType::Offer).is_some() {
                        done[i] = Some(t0.elapsed());
                    }
                }
            }
        }
        done
    })
    .join()
    .unwrap();
    let ok = answered.iter().filter(|d| d.is_some()).count();
    let all = answered.iter().flatten().max().copied().unwrap_or_default();
    let first = answered.iter().flatten().min().copied().unwrap_or_default();
    let rss1 = status_kb(pid, "VmRSS:");
    let thr1 = status_kb(pid, "Threads:");
    let kids1 = children(pid);
    row(&format!("DHCP servers answering (of {n})"), ok.to_string());
    row(
        "time until the first answers (s)",
        format!("{:.2}", first.as_secs_f64()),
    );
    row(
        &format!("time until all {n} answer (s)"),
        format!("{:.2}", all.as_secs_f64()),
    );
    row(
        "agent RSS with 0 servers (MiB)",
        format!("{:.1}", rss0 as f64 / 1024.0),
    );
    row(
        &format!("agent RSS with {n} servers (MiB)"),
        format!("{:.1}", rss1 as f64 / 1024.0),
    );
    row(
        "agent RSS added per server (KiB)",
        format!("{:.1}", (rss1 as f64 - rss0 as f64) / n as f64),
    );
    row("agent threads before / after", format!("{thr0} / {thr1}"));
    row(
        "agent child processes before / after",
        format!("{kids0} / {kids1}"),
    );

    // 2. Round trips: the agent's server 0 and one dnsmasq, same client code.
    let dm_ns = format!("{prefix}dnsmasq");
    netns::create(&dm_ns).unwrap();
    plumbing::link::create_veth(&VethSpec {
        a: VethEnd::new("dm-srv", Netns::named(dm_ns.clone())),
        b: VethEnd::new(format!("dm{tag}"), Netns::named(node.clone())),
        owner: "bench".into(),
    })
    .unwrap();
    plumbing::Handle::new(&Netns::named(dm_ns.clone()))
        .unwrap()
        .add_address("dm-srv", "10.254.0.2/24".parse().unwrap())
        .unwrap();
    let dm_mac = [0xfa, 0x16, 0x3e, 0xee, 0, 1];
    let t_dm = Instant::now();
    let dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            &dm_ns,
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .args([
            "--port=0",
            "--interface=dm-srv",
            "--bind-interfaces",
            "--no-ping",
        ])
        .arg("--dhcp-range=10.254.0.0,static,255.255.255.0,86400")
        .arg(format!("--dhcp-host={},10.254.0.11", mac_str(dm_mac)))
        .arg("--dhcp-option=3,10.254.0.1")
        .arg("--dhcp-option=6,10.255.0.53")
        .arg(format!(
            "--dhcp-leasefile={}",
            clean.dir.path().join("dnsmasq.leases").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq-base)");
    let dm_pid = dnsmasq.id();
    clean.procs.push(dnsmasq);
    let runs = 300;
    let tag3 = tag.clone();
    let node3 = node.clone();
    let (agent_rt, dm_rt, dm_start) = std::thread::spawn(move || {
        enter(&node3);
        let measure = |dev: &str, mac: [u8; 6]| {
            let s = client(dev).unwrap();
            let mut offer = Vec::new();
            let mut full = Vec::new();
            for k in 0..runs {
                if let Some((a, b)) = dora(&s, mac, 0x5000_0000 + k, Duration::from_secs(2)) {
                    offer.push(a);
                    full.push(b);
                }
            }
            (offer, full)
        };
        let s = client(&format!("dm{tag3}")).unwrap();
        let mut xid = 0x7000_0000;
        while dora(&s, dm_mac, xid, Duration::from_millis(20)).is_none() {
            xid += 1;
        }
        let dm_start = t_dm.elapsed();
        drop(s);
        let a = measure(&format!("td{tag3}0"), host_mac(0));
        let d = measure(&format!("dm{tag3}"), dm_mac);
        (a, d, dm_start)
    })
    .join()
    .unwrap();
    for (who, (mut offer, mut full)) in [("crosspod-agent", agent_rt), ("dnsmasq", dm_rt)] {
        row(
            &format!("{who}: exchanges answered (of {runs})"),
            full.len().to_string(),
        );
        row(
            &format!("{who}: DISCOVER->OFFER p50 / p99 (us)"),
            format!("{:.0} / {:.0}", pct(&mut offer, 0.5), pct(&mut offer, 0.99)),
        );
        row(
            &format!("{who}: DISCOVER..ACK p50 / p99 (us)"),
            format!("{:.0} / {:.0}", pct(&mut full, 0.5), pct(&mut full, 0.99)),
        );
    }
    let dm_rss = status_kb(dm_pid, "VmRSS:");
    row(
        "dnsmasq (1 network): start until it answers (ms)",
        format!("{:.0}", dm_start.as_secs_f64() * 1e3),
    );
    row(
        "dnsmasq (1 network): RSS (MiB)",
        format!("{:.1}", dm_rss as f64 / 1024.0),
    );
    row(
        &format!("dnsmasq per network x {n}: RSS (MiB), processes"),
        format!("{:.0}, {n}", dm_rss as f64 * n as f64 / 1024.0),
    );

    // 3. Teardown through the agent.
    let t2 = Instant::now();
    write(&state(0, &tag));
    let mine = format!("{prefix}qdhcp-");
    while netns::list().unwrap().iter().any(|x| x.starts_with(&mine)) {
        if t2.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    row(
        &format!("teardown of {n} servers (s)"),
        format!("{:.2}", t2.elapsed().as_secs_f64()),
    );
    drop(sb);
    drop(clean);
}

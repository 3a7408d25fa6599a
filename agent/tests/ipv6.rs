//! IPv6 from the agent with real packets: a node namespace with its own OVS, the agent daemon
//! (desired state from a file) and VMs as namespaces plugged into br-vlan.
//!
//! - Router advertisements: a VM's own kernel takes SLAAC, its default route and the MTU from
//!   the advertisements of a router leg; a router solicitation is answered with every option;
//!   removing `ipv6_ra` (then the router) sends the final advertisement, and the VM's default
//!   route goes at once; an agent restart writes nothing and advertisements go on.
//! - DHCPv6: a real client (ISC `dhclient -6`) gets exactly the port's fixed IP on a
//!   `dhcpv6-stateful` subnet, an unknown MAC gets nothing, and on a `dhcpv6-stateless` subnet
//!   an Information-Request gets the DNS servers.
//!
//! Needs root, Open vSwitch, ethtool and isc-dhcp-client (scripts/install-deps.sh).

mod common;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, metrics, wait_for, Node, SlaacVm as Vm};
use plumbing::{icmp6, netns, sysctl, Netns};
use serde_json::{json, Value};

const ROUTER: &str = "0f6e3d2e-1484-4fdb-8e00-0000000000a6";
const NET: &str = "5a1c0e2e-1484-4fdb-8e00-0000000000d6";
const LEG_MAC: &str = "fa:16:3e:00:01:01";
const LEG_LL: &str = "fe80::f816:3eff:fe00:101";
const MAC1: &str = "fa:16:3e:00:00:11";
const MAC2: &str = "fa:16:3e:00:00:12";

fn mac(s: &str) -> [u8; 6] {
    plumbing::link::parse_mac(s).unwrap()
}

fn ra_state(tag: &str, ra: Option<Value>, with_router: bool) -> Value {
    let mut leg = json!({"kind": "internal", "bridge": "br-vlan", "tag": 101,
        "address": "fd00:1::1/64", "mac": LEG_MAC, "ns_ifname": format!("qr-{tag}"),
        "ovs_ifname": format!("vr-{tag}"), "network_id": NET, "subnet_id": "s6"});
    if let Some(ra) = ra {
        leg["ipv6_ra"] = ra;
    }
    let routers = if with_router {
        json!({ROUTER: {"router_id": ROUTER, "project_id": "p1",
            "namespace": format!("qrouter-{ROUTER}"), "legs": [leg], "routes": []}})
    } else {
        json!({})
    };
    json!({
        "node": "n1", "pod": "RegionOne", "revision": 3,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": []}},
        "ports": {
            "port-vm1": {"bridge": "br-vlan", "tag": 101, "network_id": NET, "mac": MAC1,
                         "fixed_ips": []},
        },
        "routers": routers
    })
}

fn advert() -> Value {
    json!({"prefixes": [{"prefix": "fd00:1::/64", "autonomous": true, "on_link": true}],
           "managed": false, "other_config": true, "router_lifetime": 1800, "mtu": 1400,
           "dns_servers": ["fd00::53"]})
}

fn counter(body: &str, name: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The options of a router advertisement, by type.
fn ra_options(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut o = &p[16..];
    while o.len() >= 8 {
        let len = usize::from(o[1]) * 8;
        assert!(len > 0 && len <= o.len(), "malformed option in {p:?}");
        out.push((o[0], o[2..len].to_vec()));
        o = &o[len..];
    }
    out
}

/// Sends a router solicitation from the VM's eth0 (hop limit 255, its link-local address) and
/// returns the advertisement that answers it and where it came from.
fn solicit(vm: &Vm, vm_mac: [u8; 6]) -> (Vec<u8>, Ipv6Addr) {
    let s = icmp6::open_in(&Netns::named(vm.ns.clone()), "eth0", &[134]).unwrap();
    icmp6::bind_link_local(&s.socket, s.link_local.unwrap(), s.ifindex).unwrap();
    s.socket.set_nonblocking(false).unwrap();
    s.socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&vm_mac);
    let to = SocketAddrV6::new(icmp6::ALL_ROUTERS, 0, 0, s.ifindex);
    s.socket.send_to(&rs, &to.into()).unwrap();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let (n, from) = s
        .socket
        .recv_from(&mut buf)
        .expect("no advertisement answered");
    // SAFETY: recv_from initialised the first n bytes.
    let bytes: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    (bytes, *from.as_socket_ipv6().unwrap().ip())
}

#[test]
fn vms_take_slaac_from_router_advertisements_and_lose_the_default_route_at_their_withdrawal() {
    let node = Node::start();
    let tag = format!("{}", std::process::id() % 100_000);
    let uplink = format!("u6{tag}");
    node.uplink(&uplink);
    let router_ns = format!("{}qrouter-{ROUTER}", node.prefix);

    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut agent = node.agent_daemon(
        &ra_state(&tag, Some(advert()), true),
        &uplink,
        &["--metrics-bind", &bind, "--ra-max-interval", "30"],
    );
    let got = node.wait_vsctl(&["list-br"], "br-vlan", Duration::from_secs(30));
    assert_eq!(got, "br-vlan", "no br-vlan; agent log:\n{}", agent.log());
    let vm = Vm::new(&node, "vm1", &format!("t6{tag}"), MAC1, "port-vm1");
    let got = node.wait_vsctl(
        &["get", "port", &format!("t6{tag}"), "tag"],
        "101",
        Duration::from_secs(30),
    );
    assert_eq!(
        got,
        "101",
        "VM port not tagged; agent log:\n{}",
        agent.log()
    );
    assert_eq!(
        sysctl::get(
            &Netns::named(router_ns.clone()),
            "net.ipv6.conf.all.forwarding"
        )
        .unwrap(),
        "1",
        "the router namespace must forward IPv6"
    );

    // SLAAC by the VM's own kernel: the EUI-64 address in the prefix, the default route via
    // the leg's link-local address, the MTU of the advertisement.
    let slaac = "fd00:1::f816:3eff:fe00:11/64";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !vm
        .ip(&["-6", "addr", "show", "dev", "eth0"])
        .contains(slaac)
    {
        assert!(
            Instant::now() < deadline,
            "no SLAAC address: {}\nagent log:\n{}",
            vm.ip(&["-6", "addr"]),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("the default route", Duration::from_secs(10), || {
        vm.default_route()
            .contains(&format!("via {LEG_LL} dev eth0"))
    });
    assert!(
        vm.default_route().contains("proto ra"),
        "{}",
        vm.default_route()
    );
    assert_eq!(
        sysctl::get(&Netns::named(vm.ns.clone()), "net.ipv6.conf.eth0.mtu").unwrap(),
        "1400"
    );
    wait_for(
        "the leg's address past DAD",
        Duration::from_secs(10),
        || common::ping(&vm.ns, "fd00:1::1"),
    );
    // A solicitation gets an answer with every option, from the leg's link-local address.
    vm.wait_link_local();
    let (ra, from) = solicit(&vm, mac(MAC1));
    assert_eq!(from, LEG_LL.parse::<Ipv6Addr>().unwrap());
    assert_eq!(ra[0], 134);
    assert_eq!(ra[5], 0x40, "O flag only");
    assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 1800);
    let opts = ra_options(&ra);
    let get = |t: u8| {
        opts.iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no option {t} in {opts:?}"))
    };
    assert_eq!(get(1), mac(LEG_MAC).to_vec());
    assert_eq!(get(5)[2..], 1400u32.to_be_bytes());
    let pio = get(3);
    assert_eq!(&pio[..2], &[64, 0xc0]);
    assert_eq!(
        &pio[14..30],
        &"fd00:1::".parse::<Ipv6Addr>().unwrap().octets()
    );
    let rdnss = get(25);
    assert_eq!(
        &rdnss[6..22],
        &"fd00::53".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert!(counter(&metrics(port), "crosspod_agent_router_solicitations_total") >= 1);

    // `ipv6_ra` removed: the final advertisement takes the default route away at once (its
    // lifetime was 1800 s), the leg and its address stay.
    node.write_desired(&ra_state(&tag, None, true));
    let t = Instant::now();
    wait_for(
        "the default route to go with the final advertisement",
        Duration::from_secs(10),
        || vm.default_route().is_empty(),
    );
    let withdrawn_in = t.elapsed();
    wait_for(
        "the advertising leg to stop",
        Duration::from_secs(5),
        || metrics(port).contains("crosspod_agent_ra_legs 0"),
    );
    assert!(common::ping(&vm.ns, "fd00:1::1"), "the leg itself stays");
    // The SLAAC address is deprecated (preferred lifetime 0), not removed.
    let addrs = vm.ip(&["-6", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains(slaac) && addrs.contains("deprecated"),
        "{addrs}"
    );

    // Advertised again: the default route is back from the initial burst.
    node.write_desired(&ra_state(&tag, Some(advert()), true));
    wait_for("the default route back", Duration::from_secs(15), || {
        vm.default_route().contains(LEG_LL)
    });

    // Restart: a pass with nothing changed writes nothing; the new daemon advertises on.
    agent.kill9();
    let (once, ok) = node.agent_once(&ra_state(&tag, Some(advert()), true), &uplink);
    assert!(ok, "{once}");
    assert_eq!(once["linux_changes"], 0, "{once}");
    assert_eq!(once["ovs_changes"], 0, "{once}");
    let port2 = free_port();
    let bind2 = format!("127.0.0.1:{port2}");
    let agent2 = node.agent_daemon(
        &ra_state(&tag, Some(advert()), true),
        &uplink,
        &["--metrics-bind", &bind2, "--ra-max-interval", "30"],
    );
    wait_for(
        "advertisements after the restart",
        Duration::from_secs(15),
        || {
            counter(
                &metrics(port2),
                "crosspod_agent_router_advertisements_total",
            ) >= 2
        },
    );
    let (ra, _) = solicit(&vm, mac(MAC1));
    assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 1800);
    assert!(vm.default_route().contains(LEG_LL));

    // The router leaves the node: its final advertisement goes before the namespace does.
    node.write_desired(&ra_state(&tag, Some(advert()), false));
    wait_for(
        "the default route to go with the router",
        Duration::from_secs(10),
        || vm.default_route().is_empty(),
    );
    wait_for(
        "the router namespace to go",
        Duration::from_secs(10),
        || !netns::exists(&router_ns),
    );
    eprintln!("default route withdrawn {withdrawn_in:?} after the desired state changed");
    drop(agent2);
}

// ---------------------------------------------------------------------------------------------
// DHCPv6

fn dhcp_state(tag: &str, mode: &str) -> Value {
    json!({
        "node": "n1", "pod": "RegionOne", "revision": 3,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": []}},
        "ports": {
            "port-vm1": {"bridge": "br-vlan", "tag": 101, "network_id": NET, "mac": MAC1,
                         "fixed_ips": ["fd00:2::11"]},
            "port-vm2": {"bridge": "br-vlan", "tag": 101, "network_id": NET, "mac": MAC2,
                         "fixed_ips": ["fd00:2::12"]}
        },
        "dhcp": {NET: {
            "network_id": NET, "port_id": "dhcp-port", "namespace": format!("qdhcp-{NET}"),
            "bridge": "br-vlan", "tag": 101, "mac": "fa:16:3e:00:00:02",
            "ns_ifname": format!("ns-{tag}"), "ovs_ifname": format!("td-{tag}"),
            "lease_seconds": 600,
            "subnets": [{"subnet_id": "s6", "cidr": "fd00:2::/64", "server_address": "fd00:2::2",
                         "dns_nameservers": ["fd00::53", "fd00::54"],
                         "ipv6_address_mode": mode}],
            // vm2's MAC is not among the hosts.
            "hosts": [{"mac": MAC1, "ip": "fd00:2::11", "subnet_id": "s6", "port_id": "port-vm1"}]
        }}
    })
}

const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
echo "$reason ip=$new_ip6_address dns=$new_dhcp6_name_servers" >> "$CROSSPOD_DHCP6_LOG"
case "$reason" in
  BOUND6|RENEW6|REBIND6|REBOOT6)
    [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/128" dev "$interface" nodad
    ;;
esac
exit 0
"#;

/// One run of `dhclient -6` in a VM (stateful, or `-S` for an Information-Request): the
/// client tries once (`-1`, 8 s) and goes to the background when it has an answer.
struct Dhclient {
    pid: PathBuf,
}

impl Dhclient {
    fn run(node: &Node, vm: &Vm, name: &str, stateless: bool, log: &Path) -> (Dhclient, bool) {
        let dir = node.dir_path();
        let script = dir.join("dhclient6.sh");
        if !script.exists() {
            std::fs::write(&script, DHCLIENT_SCRIPT).unwrap();
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let conf = dir.join("dhclient6.conf");
        std::fs::write(&conf, "timeout 8;\n").unwrap();
        let pid = dir.join(format!("{name}.pid"));
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &vm.ns, "dhclient", "-6", "-1", "-v"]);
        if stateless {
            c.arg("-S");
        }
        c.arg("-cf")
            .arg(&conf)
            .arg("-sf")
            .arg(&script)
            .arg("-lf")
            .arg(dir.join(format!("{name}.leases")))
            .arg("-pf")
            .arg(&pid)
            .arg("-e")
            .arg(format!("CROSSPOD_DHCP6_LOG={}", log.display()))
            .arg("eth0");
        let out = c
            .output()
            .expect("dhclient (apt-get install isc-dhcp-client)");
        let _ = std::fs::write(dir.join(format!("{name}.dhclient.err")), &out.stderr);
        (Dhclient { pid }, out.status.success())
    }
}

impl Drop for Dhclient {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // Only a dhclient started by this test: its pid file is in the test's own dir.
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.contains(&self.pid.display().to_string()) {
                // SAFETY: plain kill(2) of the client this test started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                // Gone before the next client binds its port.
                let deadline = Instant::now() + Duration::from_secs(3);
                while std::path::Path::new(&format!("/proc/{pid}")).exists()
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

#[test]
fn dhcpv6_leases_the_fixed_ip_to_known_macs_and_answers_information_requests() {
    let node = Node::start();
    let tag = format!("{}", std::process::id() % 100_000);
    let uplink = format!("u7{tag}");
    node.uplink(&uplink);
    let dhcp_ns = format!("{}qdhcp-{NET}", node.prefix);
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut agent = node.agent_daemon(
        &dhcp_state(&tag, "dhcpv6-stateful"),
        &uplink,
        &["--metrics-bind", &bind],
    );
    let got = node.wait_vsctl(&["list-br"], "br-vlan", Duration::from_secs(30));
    assert_eq!(got, "br-vlan", "no br-vlan; agent log:\n{}", agent.log());
    let vm1 = Vm::new(&node, "vm1", &format!("t1{tag}"), MAC1, "port-vm1");
    let vm2 = Vm::new(&node, "vm2", &format!("t2{tag}"), MAC2, "port-vm2");
    for t in [format!("t1{tag}"), format!("t2{tag}"), format!("td-{tag}")] {
        let got = node.wait_vsctl(&["get", "port", &t, "tag"], "101", Duration::from_secs(30));
        assert_eq!(got, "101", "{t}; agent log:\n{}", agent.log());
    }
    wait_for("the DHCP server to listen", Duration::from_secs(20), || {
        metrics(port).contains("crosspod_agent_dhcp_servers 1")
    });
    let dns = Netns::named(dhcp_ns.clone());
    assert_eq!(
        sysctl::get(&dns, &format!("net.ipv6.conf.ns-{tag}.accept_ra")).unwrap(),
        "0"
    );
    vm1.wait_link_local();
    vm2.wait_link_local();

    // Stateful: vm1 (a DUID-LLT of its MAC, dhclient's default) gets exactly its fixed IP.
    let log1 = node.dir_path().join("vm1.dhcp6.log");
    let (c1, ok) = Dhclient::run(&node, &vm1, "vm1", false, &log1);
    let events = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(
        ok,
        "vm1 got no lease: {events}\n{}\nagent log:\n{}",
        std::fs::read_to_string(node.dir_path().join("vm1.dhclient.err")).unwrap_or_default(),
        agent.log()
    );
    let bound = events
        .lines()
        .find(|l| l.starts_with("BOUND6"))
        .unwrap_or_else(|| panic!("{events}"));
    assert!(bound.contains("ip=fd00:2::11 "), "{bound}");
    assert!(bound.contains("dns=fd00::53 fd00::54"), "{bound}");
    let addrs = vm1.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    assert!(addrs.contains("inet6 fd00:2::11/128"), "{addrs}");
    assert_eq!(addrs.matches("inet6 ").count(), 1, "{addrs}");
    // The on-link prefix comes from router advertisements (none in this test): added by hand.
    vm1.ip(&["-6", "route", "add", "fd00:2::/64", "dev", "eth0"]);
    wait_for(
        "vm1 to reach the DHCP port",
        Duration::from_secs(10),
        || common::ping(&vm1.ns, "fd00:2::2"),
    );

    // vm2's MAC is not among the hosts: nothing, and the client gives up.
    let log2 = node.dir_path().join("vm2.dhcp6.log");
    let (_c2, ok) = Dhclient::run(&node, &vm2, "vm2", false, &log2);
    assert!(!ok, "vm2 got a lease: {:?}", std::fs::read_to_string(&log2));
    assert!(!vm2
        .ip(&["-6", "addr", "show", "dev", "eth0", "scope", "global"])
        .contains("fd00:2::"));
    let m = metrics(port);
    assert!(counter(&m, "crosspod_agent_dhcp_ignored_total") >= 1, "{m}");
    assert!(counter(&m, "crosspod_agent_dhcp_offers_total") >= 1, "{m}");
    assert!(counter(&m, "crosspod_agent_dhcp_acks_total") >= 1, "{m}");

    // Restart: nothing to write (addresses, checksum offload, accept_ra already right).
    agent.kill9();
    let (once, ok) = node.agent_once(&dhcp_state(&tag, "dhcpv6-stateful"), &uplink);
    assert!(ok, "{once}");
    assert_eq!(once["linux_changes"], 0, "{once}");
    assert_eq!(once["ovs_changes"], 0, "{once}");
    let port2 = free_port();
    let bind2 = format!("127.0.0.1:{port2}");
    let agent2 = node.agent_daemon(
        &dhcp_state(&tag, "dhcpv6-stateless"),
        &uplink,
        &["--metrics-bind", &bind2],
    );
    wait_for(
        "the DHCP server to listen again",
        Duration::from_secs(20),
        || metrics(port2).contains("crosspod_agent_dhcp_servers 1"),
    );

    // Stateless: an Information-Request, even from vm2, gets the DNS servers; no address.
    let log3 = node.dir_path().join("vm2s.dhcp6.log");
    let (_c3, ok) = Dhclient::run(&node, &vm2, "vm2s", true, &log3);
    let events = std::fs::read_to_string(&log3).unwrap_or_default();
    assert!(
        ok,
        "no answer to the Information-Request: {events}\n{}\nagent log:\n{}",
        std::fs::read_to_string(node.dir_path().join("vm2s.dhclient.err")).unwrap_or_default(),
        agent2.log()
    );
    let info = events
        .lines()
        // ISC dhclient reports the answer to `-S` as INFORM6 or RENEW6, without an address.
        .find(|l| l.starts_with("INFORM6") || l.starts_with("RENEW6"))
        .unwrap_or_else(|| panic!("{events}"));
    assert!(info.contains("dns=fd00::53 fd00::54"), "{info}");
    assert!(info.contains("ip= "), "{info}");
    // And a stateful Solicit is no longer answered, even for vm1's MAC.
    drop(c1);
    let log4 = node.dir_path().join("vm1b.dhcp6.log");
    std::fs::remove_file(node.dir_path().join("vm1.leases")).ok();
    let ignored = counter(&metrics(port2), "crosspod_agent_dhcp_ignored_total");
    let (_c4, ok) = Dhclient::run(&node, &vm1, "vm1b", false, &log4);
    let err =
        std::fs::read_to_string(node.dir_path().join("vm1b.dhclient.err")).unwrap_or_default();
    assert!(err.contains("Solicit"), "the client did not solicit: {err}");
    assert!(
        counter(&metrics(port2), "crosspod_agent_dhcp_ignored_total") > ignored,
        "vm1's Solicit was not heard"
    );
    assert!(
        !ok,
        "a stateless subnet leased: {:?}",
        std::fs::read_to_string(&log4)
    );
    drop(agent2);
}

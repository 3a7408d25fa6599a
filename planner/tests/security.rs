//! Port security in the planner: each secured VM port's allowed sources, groups and conntrack
//! zone; the node's groups with their rules and remote-group members from every pod; and
//! incremental re-planning of group, rule and membership changes equal to planning whole,
//! touching exactly the nodes whose state changes.

mod common;

use std::collections::BTreeSet;

use common::*;
use planner::*;
use wire::{Direction, EtherType, SecurityGroupRule};

const PODS: usize = 3;

fn any_rule(id: &str, direction: Direction, remote: Option<&str>) -> SecurityGroupRule {
    SecurityGroupRule {
        id: id.into(),
        direction,
        ethertype: EtherType::IPv4,
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote_ip_prefix: None,
        remote_group_id: remote.map(str::to_string),
    }
}

fn tcp(id: &str, port: u16, remote: &str) -> SecurityGroupRule {
    SecurityGroupRule {
        protocol: Some(6),
        port_range_min: Some(port),
        port_range_max: Some(port),
        ..any_rule(id, Direction::Ingress, Some(remote))
    }
}

fn set_groups(s: &mut Snapshot, port: &str, groups: &[&str]) {
    s.port_security
        .entry(port.to_string())
        .or_default()
        .security_groups = groups.iter().map(|g| g.to_string()).collect();
}

/// 3 pods x 2 nodes; 6 projects with a local network, a stretched VLAN network and a port on a
/// shared network; per project groups `def` (egress, ingress from itself), `web` (tcp 80 from
/// `app`) and `app`; every VM port secured in `def`, some also in `web` or `app`, one with an
/// address pair, one without port security.
fn cloud() -> Snapshot {
    let mut s = Snapshot::default();
    for p in 0..PODS {
        s.pods.push(Pod {
            region_name: format!("R{p}"),
            az_name: Some(format!("az{p}")),
        });
        for (n, maps) in [
            ("a", &[("bridge", "br-vlan")][..]),
            ("b", &[("bridge", "br-vlan"), ("extern", "br-ext")][..]),
        ] {
            s.nodes
                .push(node(&format!("r{p}-{n}"), &format!("R{p}"), maps));
        }
    }
    add_shared_vlan_net(&mut s, "shared", 2900, "192.168.0.0/24");
    for pr in 0..6usize {
        let p = format!("p{pr}");
        let host = |k: usize| format!("r{}-{}", k % PODS, ["a", "b"][k % 2]);
        let (local, vlan) = (format!("{p}-local"), format!("{p}-vlan"));
        add_local_net(&mut s, &p, &local, "10.0.0.0/24");
        add_vlan_net(&mut s, &p, &vlan, 2000 + pr as u16, &[], "10.1.0.0/24");
        add_vm(
            &mut s,
            &p,
            &format!("{p}-l1"),
            &local,
            "10.0.0.5",
            &host(pr),
        );
        add_vm(
            &mut s,
            &p,
            &format!("{p}-l2"),
            &local,
            "10.0.0.6",
            &host(pr),
        );
        add_vm(
            &mut s,
            &p,
            &format!("{p}-v1"),
            &vlan,
            "10.1.0.5",
            &host(pr + 1),
        );
        add_vm(
            &mut s,
            &p,
            &format!("{p}-v2"),
            &vlan,
            "10.1.0.6",
            &host(pr + 2),
        );
        add_vm(
            &mut s,
            &p,
            &format!("{p}-sh"),
            "shared",
            &format!("192.168.0.{}", 10 + pr),
            &host(pr + 3),
        );
        let (def, web, app) = (format!("{p}-def"), format!("{p}-web"), format!("{p}-app"));
        s.security_groups.insert(
            def.clone(),
            SecurityGroup {
                project_id: p.clone(),
                rules: vec![
                    any_rule(&format!("{def}-e"), Direction::Egress, None),
                    any_rule(&format!("{def}-i"), Direction::Ingress, Some(&def)),
                ],
            },
        );
        s.security_groups.insert(
            web.clone(),
            SecurityGroup {
                project_id: p.clone(),
                rules: vec![tcp(&format!("{web}-80"), 80, &app)],
            },
        );
        s.security_groups.insert(
            app.clone(),
            SecurityGroup {
                project_id: p.clone(),
                rules: vec![any_rule(&format!("{app}-e"), Direction::Egress, None)],
            },
        );
        for port in ["l1", "l2", "v1", "sh"] {
            set_groups(&mut s, &format!("{p}-{port}"), &[&def]);
        }
        set_groups(&mut s, &format!("{p}-l1"), &[&def, &web]);
        set_groups(&mut s, &format!("{p}-v1"), &[&app, &def]);
        set_groups(&mut s, &format!("{p}-sh"), &[&app]);
        s.port_security
            .get_mut(&format!("{p}-v1"))
            .unwrap()
            .allowed_address_pairs = vec![(net("10.1.0.128/25"), None)];
        // v2 has port security off: no entry.
    }
    settle(&mut s);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    s
}

fn check(name: &str, old: &Snapshot, new: &Snapshot, change: Change) -> BTreeSet<String> {
    let prev = plan_all(old);
    let want = plan_all(new);
    let got = replan_both(name, old, new, &prev, &change);
    let mut touched = affected_nodes(old, &change);
    touched.extend(affected_nodes(new, &change));
    let scoped = plan_nodes(new, touched.iter().map(String::as_str));
    let mut changed = BTreeSet::new();
    for (node, state) in &want {
        if &prev[node] != state {
            changed.insert(node.clone());
        }
        match got.get(node) {
            Some(g) => assert_eq!(g, state, "{name}: replan of {node} differs from plan_all"),
            None => assert_eq!(
                &prev[node], state,
                "{name}: {node} changed but replan left it out"
            ),
        }
        match scoped.get(node) {
            Some(g) => assert_eq!(g, state, "{name}: plan_nodes of {node} differs"),
            None => assert_eq!(
                &prev[node], state,
                "{name}: {node} changed but not affected"
            ),
        }
    }
    assert!(!changed.is_empty(), "{name}: the change changes nothing");
    changed
}

fn mutate(name: &str, change: Change, f: impl FnOnce(&mut Snapshot)) -> BTreeSet<String> {
    let old = cloud();
    let mut new = old.clone();
    f(&mut new);
    settle(&mut new);
    check(name, &old, &new, change)
}

fn host_of(s: &Snapshot, port: &str) -> String {
    s.ports
        .iter()
        .find(|p| p.id == port)
        .and_then(|p| p.binding_host.clone())
        .unwrap()
}

#[test]
fn ports_carry_their_security_and_nodes_their_groups() {
    let s = cloud();
    let all = plan_all(&s);
    let n = &all[&host_of(&s, "p0-l1")];
    let b = &n.ports["p0-l1"];
    let sec = b.security.as_ref().expect("secured");
    assert_eq!(sec.security_groups, vec!["p0-def", "p0-web"]);
    assert_eq!(sec.allowed.len(), 1);
    assert_eq!(sec.allowed[0].ip, net("10.0.0.5/32"));
    assert_eq!(sec.allowed[0].mac, b.mac);
    assert_eq!(
        sec.ct_zone,
        ct_zone(
            &s.nodes
                .iter()
                .find(|x| x.name == n.node)
                .unwrap()
                .bridge_mappings,
            &b.bridge,
            b.tag
        )
    );
    // web's rule names app: app's members come from every pod, pairs included; app's own
    // rules are not needed here.
    let app = &n.security_groups["p0-app"];
    assert!(app.rules.is_empty());
    let want: BTreeSet<_> = [
        net("10.1.0.5/32"),
        net("10.1.0.128/25"),
        net("192.168.0.10/32"),
    ]
    .into_iter()
    .collect();
    assert_eq!(app.members, want);
    assert_eq!(n.security_groups["p0-web"].rules.len(), 1);
    assert!(n.security_groups["p0-web"].members.is_empty());
    // def names itself: its members are every port in it.
    assert!(n.security_groups["p0-def"]
        .members
        .contains(&net("10.0.0.6/32")));
    // A port without port security has none, and its groups are not on the node for it.
    let v2 = &all[&host_of(&s, "p0-v2")].ports["p0-v2"];
    assert!(v2.security.is_none());
    // Pairs without a MAC take the port's.
    let v1 = &all[&host_of(&s, "p0-v1")].ports["p0-v1"];
    let sec = v1.security.as_ref().unwrap();
    assert!(sec.allowed.iter().all(|a| a.mac == v1.mac));
    assert_eq!(sec.allowed.len(), 2);
    // Zones on one node: one per network, all distinct.
    for st in all.values() {
        let mut by_net = std::collections::BTreeMap::new();
        for p in st.ports.values() {
            if let Some(sec) = &p.security {
                let z = *by_net.entry(p.network_id.clone()).or_insert(sec.ct_zone);
                assert_eq!(z, sec.ct_zone, "one zone per network on {}", st.node);
            }
        }
        let zones: BTreeSet<u16> = by_net.values().copied().collect();
        assert_eq!(zones.len(), by_net.len(), "zones unique on {}", st.node);
    }
}

#[test]
fn group_and_rule_changes_replan_like_full() {
    mutate("add a rule", Change::SecurityGroup("p1-web".into()), |s| {
        let g = s.security_groups.get_mut("p1-web").unwrap();
        g.rules.push(tcp("p1-web-443", 443, "p1-app"));
    });
    let changed = mutate(
        "a rule names a new remote group",
        Change::SecurityGroup("p2-app".into()),
        |s| {
            let g = s.security_groups.get_mut("p2-app").unwrap();
            g.rules.push(tcp("p2-app-22", 22, "p2-web"));
        },
    );
    let s = cloud();
    // Exactly the nodes with a port in p2-app.
    let want: BTreeSet<String> = ["p2-v1", "p2-sh"].iter().map(|p| host_of(&s, p)).collect();
    assert_eq!(changed, want);
    mutate(
        "delete a group",
        Change::SecurityGroup("p3-app".into()),
        |s| {
            s.security_groups.remove("p3-app");
            // Its rules elsewhere went with it, and no port was in it.
            s.security_groups
                .get_mut("p3-web")
                .unwrap()
                .rules
                .retain(|r| r.remote_group_id.as_deref() != Some("p3-app"));
            for p in ["p3-v1", "p3-sh"] {
                set_groups(s, p, &["p3-def"]);
            }
        },
    );
    mutate("new group", Change::SecurityGroup("p4-new".into()), |s| {
        s.security_groups.insert(
            "p4-new".into(),
            SecurityGroup {
                project_id: "p4".into(),
                rules: vec![tcp("p4-new-1", 1, "p4-web")],
            },
        );
        // (A group change and a port change arrive as two changes; here, only the rule.)
        s.security_groups
            .get_mut("p4-web")
            .unwrap()
            .rules
            .push(tcp("p4-web-2", 2, "p4-new"));
    });
}

#[test]
fn membership_changes_replan_every_node_naming_the_group() {
    // p0-v2 (port security off) gets it, joining app: nodes with p0-l1 (web names app) change.
    let changed = mutate("join app", Change::Port("p0-v2".into()), |s| {
        set_groups(s, "p0-v2", &["p0-app"]);
    });
    let s = cloud();
    assert!(changed.contains(&host_of(&s, "p0-l1")), "{changed:?}");
    assert!(changed.contains(&host_of(&s, "p0-v2")), "{changed:?}");
    mutate("leave app", Change::Port("p1-v1".into()), |s| {
        set_groups(s, "p1-v1", &["p1-def"]);
    });
    mutate("new pair", Change::Port("p2-v1".into()), |s| {
        s.port_security
            .get_mut("p2-v1")
            .unwrap()
            .allowed_address_pairs
            .push((net("10.9.9.9/32"), Some("fa:16:3e:99:99:99".into())));
    });
    mutate("port security off", Change::Port("p3-l2".into()), |s| {
        s.port_security.remove("p3-l2");
    });
    mutate(
        "member on the shared net",
        Change::Port("p4-sh".into()),
        |s| {
            s.port_security.remove("p4-sh");
        },
    );
    mutate("new member elsewhere", Change::Port("p5-new".into()), |s| {
        add_vm(s, "p5", "p5-new", "p5-vlan", "10.1.0.77", "r2-b");
        set_groups(s, "p5-new", &["p5-app"]);
    });
    mutate("deleted member", Change::Port("p5-v1".into()), |s| {
        s.ports.retain(|p| p.id != "p5-v1");
        s.port_security.remove("p5-v1");
    });
    // A member need not be a VM port: a router's port of the project with port security
    // (made from a user's port) puts its address in `def`, which `def`'s own rule names.
    mutate(
        "router port joins def",
        Change::Port("p2-rtr".into()),
        |s| {
            add_vm(s, "p2", "p2-rtr", "p2-local", "10.0.0.1", "r0-a");
            let p = s.ports.iter_mut().find(|p| p.id == "p2-rtr").unwrap();
            p.device_owner = "network:router_interface".into();
            p.binding_host = None;
            set_groups(s, "p2-rtr", &["p2-def"]);
        },
    );
    mutate("moved member", Change::Port("p1-v1".into()), |s| {
        s.ports
            .iter_mut()
            .find(|p| p.id == "p1-v1")
            .unwrap()
            .binding_host = Some("r0-b".into());
    });
}

/// Scale: 1,000 secured ports on 10 nodes of one pod, 500 in `web` whose rule names `app`
/// (1,000 members). One port moving from `app` to `web` changes exactly the nodes with `web`
/// ports and its own, like a full plan. Prints the timings (`--nocapture`).
#[test]
fn a_membership_change_among_a_thousand_members() {
    let mut s = Snapshot::default();
    s.pods.push(Pod {
        region_name: "R0".into(),
        az_name: None,
    });
    for n in 0..10 {
        s.nodes
            .push(node(&format!("n{n}"), "R0", &[("bridge", "br-vlan")]));
    }
    add_vlan_net(&mut s, "p", "big", 100, &[], "10.0.0.0/16");
    s.security_groups.insert(
        "web".into(),
        SecurityGroup {
            project_id: "p".into(),
            rules: vec![tcp("web-80", 80, "app")],
        },
    );
    s.security_groups.insert(
        "app".into(),
        SecurityGroup {
            project_id: "p".into(),
            rules: vec![any_rule("app-e", Direction::Egress, None)],
        },
    );
    for i in 0..1000usize {
        let id = format!("vm{i:04}");
        let addr = format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250);
        // web ports on nodes n0..n4, app ports on n5..n9.
        let web = i < 500;
        let host = format!("n{}", if web { i % 5 } else { 5 + i % 5 });
        add_vm(&mut s, "p", &id, "big", &addr, &host);
        set_groups(&mut s, &id, &[if web { "web" } else { "app" }]);
    }
    // The extra 500 app members: web ports are in app too (1,000 members).
    for i in 0..500usize {
        set_groups(&mut s, &format!("vm{i:04}"), &["app", "web"]);
    }
    settle(&mut s);
    let t0 = std::time::Instant::now();
    let prev = plan_all(&s);
    let full = t0.elapsed();
    assert_eq!(prev["n0"].security_groups["app"].members.len(), 1000);
    let mut new = s.clone();
    set_groups(&mut new, "vm0999", &["web"]);
    let change = Change::Port("vm0999".into());
    let t0 = std::time::Instant::now();
    let got = replan(&s, &new, &prev, &change);
    let inc = t0.elapsed();
    let want = plan_all(&new);
    for (n, st) in &got {
        assert_eq!(st, &want[n], "{n}");
    }
    for (n, st) in &want {
        if !got.contains_key(n) {
            assert_eq!(&prev[n], st, "{n} changed but was not re-planned");
        }
    }
    // What changed: n0..n4 (web ports: app's members) and n9 (vm0999's own groups). The
    // port's network spans every node, so all are re-planned (the others unchanged).
    let changed: BTreeSet<&str> = got
        .iter()
        .filter(|(n, st)| &prev[n.as_str()] != *st)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        changed,
        ["n0", "n1", "n2", "n3", "n4", "n9"].into_iter().collect()
    );
    eprintln!(
        "1,000 secured ports, 1,000 members: plan_all {full:?}, one membership change {inc:?} ({} nodes)",
        got.len()
    );
}

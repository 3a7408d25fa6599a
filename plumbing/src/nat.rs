//! NAT in a router namespace: SNAT of subnets out of the gateway interface and 1:1 DNAT/SNAT
//! for floating IPs, all in the crosspod-owned table `ip crosspod`.
//!
//! Backend: libnftables JSON (documented in libnftables-json(5)), in-process on a thread inside
//! the namespace ([`crate::nftlib`], the library `nft` itself wraps), or `nft -j -f -` run
//! inside the namespace where the library cannot be loaded. There is no maintained Rust crate
//! for nf_tables netlink (the candidates need libnftnl or are unmaintained), and hand-rolled
//! netlink would have to decode every rule expression to compare; libnftables' JSON is a
//! stable interface and one input is one kernel transaction. The table is replaced
//! atomically in one batch: `add table; delete table; add table; add chains; add rules` (the
//! delete also clears chains, sets or hooks someone else may have added to our table, which a
//! flush would leave). Before writing, the table is read back (`nft -j list ruleset ip`) and
//! compared with the desired rules in nft's own listing form, so applying the same NAT twice
//! changes nothing.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Stdio;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::link::{validate_ifname, Changed};
use crate::netns::{command_in, Netns};

/// The nftables table crosspod owns in each router namespace (family `ip`).
pub const NAT_TABLE: &str = "crosspod";

/// `oifname out_ifname ip saddr <source> snat to <to>`, one rule per source subnet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Snat {
    /// Source subnets.
    pub sources: Vec<Ipv4Net>,
    /// The gateway interface inside the namespace.
    pub out_ifname: String,
    /// The address sources are translated to.
    pub to: Ipv4Addr,
}

/// A floating IP: DNAT `floating_ip -> fixed_ip`, and SNAT `fixed_ip -> floating_ip` out of
/// `out_ifname` (evaluated before the subnet SNAT rules).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FloatingIp {
    /// The public address.
    pub floating_ip: Ipv4Addr,
    /// The VM's address.
    pub fixed_ip: Ipv4Addr,
    /// The gateway interface inside the namespace.
    pub out_ifname: String,
}

/// The whole NAT of one router namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatSpec {
    /// Subnet SNAT.
    pub snat: Vec<Snat>,
    /// Floating IPs.
    pub floating: Vec<FloatingIp>,
}

impl NatSpec {
    fn validate(&self) -> Result<()> {
        for s in &self.snat {
            validate_ifname(&s.out_ifname)?;
        }
        for f in &self.floating {
            validate_ifname(&f.out_ifname)?;
        }
        Ok(())
    }
}

fn addr_match(field: &str, net: &Ipv4Net) -> Value {
    let right = if net.prefix_len() == 32 {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.trunc().addr().to_string(), "len": net.prefix_len()}})
    };
    json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": field}}, "right": right}})
}

fn oif_match(ifname: &str) -> Value {
    json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": ifname}})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"family": "ip", "table": NAT_TABLE, "chain": chain, "expr": expr})
}

fn chains() -> Vec<Value> {
    vec![
        json!({"family": "ip", "table": NAT_TABLE, "name": "prerouting", "type": "nat",
               "hook": "prerouting", "prio": -100, "policy": "accept"}),
        json!({"family": "ip", "table": NAT_TABLE, "name": "postrouting", "type": "nat",
               "hook": "postrouting", "prio": 100, "policy": "accept"}),
    ]
}

/// The desired rules, in nft's listing form and a stable order (independent of the order of
/// the spec's lists).
fn rules(spec: &NatSpec) -> Vec<Value> {
    let mut floating = spec.floating.clone();
    floating.sort();
    floating.dedup();
    let mut snat: Vec<(String, Ipv4Net, Ipv4Addr)> = spec
        .snat
        .iter()
        .flat_map(|s| {
            s.sources
                .iter()
                .map(move |n| (s.out_ifname.clone(), n.trunc(), s.to))
        })
        .collect();
    snat.sort();
    snat.dedup();
    let mut out = Vec::new();
    for f in &floating {
        out.push(rule(
            "prerouting",
            vec![
                addr_match("daddr", &Ipv4Net::from(f.floating_ip)),
                json!({"dnat": {"addr": f.fixed_ip.to_string()}}),
            ],
        ));
    }
    for f in &floating {
        out.push(rule(
            "postrouting",
            vec![
                oif_match(&f.out_ifname),
                addr_match("saddr", &Ipv4Net::from(f.fixed_ip)),
                json!({"snat": {"addr": f.floating_ip.to_string()}}),
            ],
        ));
    }
    for (ifname, net, to) in &snat {
        out.push(rule(
            "postrouting",
            vec![
                oif_match(ifname),
                addr_match("saddr", net),
                json!({"snat": {"addr": to.to_string()}}),
            ],
        ));
    }
    out
}

/// Runs `cmd` (nft syntax or a libnftables JSON document) with JSON output inside `ns`:
/// in-process through libnftables on a thread in the namespace ([`crate::nftlib`]), or, where
/// the library is missing, as `nft -j <cmd>` (a listing) or `nft -j -f -` (a JSON document on
/// stdin) forked into it. Same library, same answers.
fn nft(ns: &Netns, op: &'static str, cmd: &str) -> Result<String> {
    let err = |detail: String| Error::Nft {
        op,
        ns: ns.display_name().to_string(),
        detail,
    };
    if crate::nftlib::available() {
        return match crate::netns::run_in(ns, || crate::nftlib::run(cmd))? {
            Some(Ok(out)) => Ok(out),
            Some(Err(e)) => Err(err(e)),
            None => Err(err("libnftables vanished".into())),
        };
    }
    let mut cmd_proc = command_in(ns, "nft")?;
    // nft prints nothing for a listing read from a file: a listing goes as arguments.
    let document = cmd.starts_with('{');
    cmd_proc.arg("-j");
    if document {
        cmd_proc.args(["-f", "-"]);
    } else {
        cmd_proc.args(cmd.split_whitespace());
    }
    cmd_proc
        .stdin(if document {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd_proc
        .spawn()
        .map_err(|e| err(format!("cannot run nft (is nftables installed?): {e}")))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(cmd.as_bytes())
            .map_err(|e| err(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the crosspod table holds now: `None` when there is no table, else its chains and rules
/// (handles stripped), in listing order.
pub fn current(ns: &Netns) -> Result<Option<(Vec<Value>, Vec<Value>)>> {
    let text = nft(ns, "list", "list ruleset ip")?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| Error::Nft {
        op: "parse listing",
        ns: ns.display_name().to_string(),
        detail: e.to_string(),
    })?;
    let items = doc["nftables"].as_array().cloned().unwrap_or_default();
    let mut found = false;
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for item in items {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let mut body = body.clone();
        let ours = match kind.as_str() {
            "table" => body["name"] == NAT_TABLE,
            _ => body["table"] == NAT_TABLE,
        };
        if !ours || body["family"] != "ip" {
            continue;
        }
        if let Some(o) = body.as_object_mut() {
            o.remove("handle");
        }
        match kind.as_str() {
            "table" => found = true,
            "chain" => chains.push(body),
            "rule" => rules.push(body),
            // Sets, maps, counters...: not ours to have; make the table compare different.
            other => rules.push(json!({ other: body })),
        }
    }
    Ok(found.then_some((chains, rules)))
}

/// Makes the crosspod NAT table of `ns` exactly `spec`, in one nftables transaction, unless it
/// already is (then nothing is written).
pub fn apply(ns: &Netns, spec: &NatSpec) -> Result<Changed> {
    spec.validate()?;
    let want_chains = chains();
    let want_rules = rules(spec);
    if let Some((chains, rules)) = current(ns)? {
        if chains == want_chains && rules == want_rules {
            return Ok(Changed::No);
        }
    }
    let table = json!({"family": "ip", "name": NAT_TABLE});
    let mut batch = vec![
        json!({"add": {"table": table}}),
        json!({"delete": {"table": table}}),
        json!({"add": {"table": table}}),
    ];
    batch.extend(
        want_chains
            .into_iter()
            .map(|c| json!({"add": {"chain": c}})),
    );
    batch.extend(want_rules.into_iter().map(|r| json!({"add": {"rule": r}})));
    let doc = json!({ "nftables": batch }).to_string();
    nft(ns, "apply", &doc)?;
    tracing::info!(
        netns = %ns,
        snat = spec.snat.len(),
        floating = spec.floating.len(),
        "replaced NAT table"
    );
    Ok(Changed::Yes)
}

/// Removes the crosspod NAT table from `ns` (nothing else). Returns whether it existed.
pub fn remove(ns: &Netns) -> Result<Changed> {
    if current(ns)?.is_none() {
        return Ok(Changed::No);
    }
    let table = json!({"family": "ip", "name": NAT_TABLE});
    let doc = json!({"nftables": [
        {"add": {"table": table}},
        {"delete": {"table": table}},
    ]})
    .to_string();
    nft(ns, "remove", &doc)?;
    tracing::info!(netns = %ns, "removed NAT table");
    Ok(Changed::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NatSpec {
        NatSpec {
            snat: vec![Snat {
                sources: vec![
                    "10.0.2.0/24".parse().unwrap(),
                    "10.0.1.7/24".parse().unwrap(),
                    "10.0.3.3/32".parse().unwrap(),
                ],
                out_ifname: "qg".into(),
                to: "163.3.124.10".parse().unwrap(),
            }],
            floating: vec![
                FloatingIp {
                    floating_ip: "163.3.124.21".parse().unwrap(),
                    fixed_ip: "10.0.1.12".parse().unwrap(),
                    out_ifname: "qg".into(),
                },
                FloatingIp {
                    floating_ip: "163.3.124.20".parse().unwrap(),
                    fixed_ip: "10.0.1.11".parse().unwrap(),
                    out_ifname: "qg".into(),
                },
            ],
        }
    }

    #[test]
    fn rules_are_ordered_floating_first_and_independent_of_input_order() {
        let a = rules(&spec());
        let mut s = spec();
        s.floating.reverse();
        s.snat[0].sources.reverse();
        assert_eq!(a, rules(&s));
        assert_eq!(a.len(), 2 + 2 + 3);
        assert_eq!(a[0]["chain"], "prerouting");
        assert_eq!(a[0]["expr"][0]["match"]["right"], "163.3.124.20");
        assert_eq!(a[0]["expr"][1]["dnat"]["addr"], "10.0.1.11");
        assert_eq!(a[2]["chain"], "postrouting");
        assert_eq!(a[2]["expr"][2]["snat"]["addr"], "163.3.124.20");
        // Subnet SNAT: host bits cleared, /32 as a plain address.
        assert_eq!(
            a[4]["expr"][1]["match"]["right"],
            json!({"prefix": {"addr": "10.0.1.0", "len": 24}})
        );
        assert_eq!(a[6]["expr"][1]["match"]["right"], "10.0.3.3");
        assert_eq!(a[6]["expr"][2]["snat"]["addr"], "163.3.124.10");
    }

    #[test]
    fn empty_spec_has_chains_but_no_rules() {
        assert!(rules(&NatSpec::default()).is_empty());
        assert_eq!(chains().len(), 2);
    }

    #[test]
    fn long_interface_names_are_invalid() {
        let mut s = spec();
        s.floating[1].out_ifname = "0123456789abcdef".into();
        assert!(matches!(
            s.validate(),
            Err(Error::NameTooLong { len: 16, .. })
        ));
    }
}

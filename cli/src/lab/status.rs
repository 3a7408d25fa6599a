//! `crosspod lab status`: every namespace, daemon and API of the lab, up or down, judged by
//! what answers (pid alive and ours, OVSDB reachable, HTTP answering), not by the state file.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::state::LabState;
use super::switch::Switch;
use super::{agents, controller};
use crate::output::table;

/// `crosspod lab status`: one row per namespace, daemon and API.
pub fn status(dir: &Path, as_json: bool) -> Result<bool> {
    let st = LabState::require(dir)?;
    let layout = st.layout();
    let mut rows: Vec<(String, String, bool, String)> = Vec::new();
    for inst in &st.switches {
        let ns = st.netns_of(inst);
        rows.push((
            "namespace".into(),
            ns.clone(),
            plumbing::netns::exists(&ns),
            String::new(),
        ));
    }
    for inst in &st.switches {
        let sw = Switch::new(&layout, inst, &st.netns_of(inst));
        for d in [sw.ovsdb(), sw.vswitchd()] {
            let pid = d.alive_pid();
            rows.push((
                "daemon".into(),
                d.name.clone(),
                pid.is_some(),
                pid.map(|p| format!("pid {p}")).unwrap_or_default(),
            ));
        }
        rows.push((
            "api".into(),
            format!("ovsdb@{inst}"),
            sw.ovsdb().alive() && sw.connect().is_ok(),
            sw.remote(),
        ));
    }
    if let Some(port) = st.keystone_port {
        let k = super::keystone::daemon(&st);
        let kpid = k.alive_pid();
        rows.push((
            "daemon".into(),
            k.name.clone(),
            kpid.is_some(),
            kpid.map(|p| format!("pid {p}")).unwrap_or_default(),
        ));
        let answers = crate::http::request(
            "GET",
            &super::keystone::url(port),
            None,
            None,
            std::time::Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200);
        rows.push((
            "api".into(),
            format!("keystone 127.0.0.1:{port}"),
            answers,
            String::new(),
        ));
    }
    let c = controller::daemon(&st);
    let pid = c.alive_pid();
    let ours = |note: &str| {
        if pid.is_some() {
            String::new()
        } else {
            note.to_string()
        }
    };
    rows.push((
        "daemon".into(),
        c.name.clone(),
        pid.is_some(),
        pid.map(|p| format!("pid {p}")).unwrap_or_default(),
    ));
    rows.push((
        "api".into(),
        format!("neutron 127.0.0.1:{}", st.neutron_port),
        pid.is_some() && controller::neutron_answers(&st),
        ours("the lab's controller is not running"),
    ));
    rows.push((
        "api".into(),
        format!("tricircle 127.0.0.1:{}", st.tricircle_port),
        pid.is_some() && controller::tricircle_answers(&st),
        ours("the lab's controller is not running"),
    ));
    // Failures injected with `lab node stop|cut` (judged by the state file: they are what
    // was asked for; the rows above show what it did).
    for node in &st.nodes {
        let mut why = Vec::new();
        if node.powered_off {
            why.push("powered off (`crosspod lab node start` brings it back)");
        }
        if node.cut {
            why.push("cables cut (`crosspod lab node mend` brings them back)");
        }
        rows.push((
            "node".into(),
            node.name.clone(),
            why.is_empty(),
            why.join("; "),
        ));
    }
    for node in &st.nodes {
        let d = agents::daemon(&st, node);
        let pid = d.alive_pid();
        rows.push((
            "daemon".into(),
            d.name.clone(),
            pid.is_some(),
            pid.map(|p| format!("pid {p}")).unwrap_or_default(),
        ));
        rows.push((
            "api".into(),
            format!(
                "agent@{} metrics 127.0.0.1:{}",
                node.name, node.metrics_port
            ),
            pid.is_some() && agents::metrics_answer(node),
            String::new(),
        ));
    }
    let healthy = rows.iter().all(|r| r.2);
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|(k, n, ok, d)| json!({"kind": k, "name": n, "ok": ok, "detail": d}))
            .collect();
        crate::output::json(&json!({
            "dir": st.dir, "prefix": st.prefix, "healthy": healthy, "items": items,
        }));
    } else {
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(k, n, ok, d)| {
                vec![
                    k.clone(),
                    n.clone(),
                    if *ok { "up" } else { "DOWN" }.to_string(),
                    d.clone(),
                ]
            })
            .collect();
        table(&["KIND", "NAME", "STATE", "DETAIL"], &table_rows);
    }
    Ok(healthy)
}

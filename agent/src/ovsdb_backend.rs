//! The OVS side of a node through the `ovs` crate: a monitor replica of the Bridge, Port and
//! Interface columns the diff needs, and every change of a pass in one transaction.
//!
//! After a write the backend waits for the replica to show it, so the next pass never diffs
//! against a view older than its own last write (which would re-insert a port).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ovs::{
    Atom, Client, Condition, MonitorRequest, Mutation, Mutator, Operation, Replica, RowValues,
    Snapshot, Value,
};
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use crate::ovs_plan::{
    ObservedBridge, ObservedOvs, ObservedPort, OvsChange, OWNER_KEY, OWNER_VALUE,
};
use crate::reconciler::OvsBackend;

/// The database the agent works on.
pub const DB: &str = "Open_vSwitch";

/// Errors of the OVS side; each names the endpoint or the change.
#[derive(Debug, thiserror::Error)]
pub enum OvsBackendError {
    #[error("OVSDB at {endpoint}: {source}")]
    Ovsdb {
        endpoint: String,
        source: ovs::Error,
    },
    #[error("OVSDB at {endpoint}: port {port} to delete is not in the replica")]
    UnknownPort { endpoint: String, port: String },
}

/// A connected OVSDB with its replica.
pub struct OvsdbBackend {
    client: Client,
    replica: Replica,
    changes: Mutex<watch::Receiver<Arc<Snapshot>>>,
}

impl OvsdbBackend {
    /// Connects to `endpoint` (`unix:PATH` or `tcp:HOST:PORT`) and starts the monitor.
    pub async fn connect(endpoint: &str) -> Result<Self, OvsBackendError> {
        let err = |source| OvsBackendError::Ovsdb {
            endpoint: endpoint.to_string(),
            source,
        };
        let client = Client::connect_to(endpoint).await.map_err(err)?;
        let replica = client
            .monitor(
                DB,
                vec![
                    MonitorRequest::new(
                        "Bridge",
                        &["name", "datapath_type", "ports", "external_ids"],
                    ),
                    MonitorRequest::new(
                        "Port",
                        &["name", "interfaces", "tag", "trunks", "external_ids"],
                    ),
                    MonitorRequest::new(
                        "Interface",
                        &[
                            "name",
                            "type",
                            "external_ids",
                            "error",
                            "ofport",
                            "options",
                            "bfd",
                            "bfd_status",
                            "link_state",
                        ],
                    ),
                ],
            )
            .await
            .map_err(err)?;
        let changes = Mutex::new(replica.subscribe());
        Ok(OvsdbBackend {
            client,
            replica,
            changes,
        })
    }

    /// The client's operation counters (transactions, writes, rows changed).
    pub fn counters(&self) -> ovs::Counters {
        self.client.counters()
    }

    fn error(&self, source: ovs::Error) -> OvsBackendError {
        OvsBackendError::Ovsdb {
            endpoint: self.client.endpoint().to_string(),
            source,
        }
    }
}

fn ints(v: Option<&Value>) -> BTreeSet<u16> {
    v.map(|v| {
        v.as_set()
            .iter()
            .filter_map(|a| a.as_i64())
            .filter_map(|i| u16::try_from(i).ok())
            .collect()
    })
    .unwrap_or_default()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn uuids(v: Option<&Value>) -> Vec<Uuid> {
    v.map(|v| v.as_set().iter().filter_map(Atom::as_uuid).collect())
        .unwrap_or_default()
}

/// The diff's view of a replica snapshot: ports that are in no bridge are ignored.
pub fn observed_from(snap: &Snapshot) -> ObservedOvs {
    let mut out = ObservedOvs::default();
    let mut port_bridge: HashMap<Uuid, String> = HashMap::new();
    for b in snap.rows("Bridge") {
        let name = b.get_str("name").unwrap_or_default().to_string();
        for p in uuids(b.get("ports")) {
            port_bridge.insert(p, name.clone());
        }
        if b.map_str("external_ids", OWNER_KEY) == Some(OWNER_VALUE) {
            out.owned_bridges.insert(name.clone());
        }
        out.bridges.insert(
            name,
            ObservedBridge {
                datapath_type: b.get_str("datapath_type").unwrap_or_default().to_string(),
            },
        );
    }
    for p in snap.rows("Port") {
        let Some(bridge) = port_bridge.get(&p.uuid) else {
            continue;
        };
        let ifaces: Vec<_> = uuids(p.get("interfaces"))
            .iter()
            .filter_map(|u| snap.row("Interface", u))
            .cloned()
            .collect();
        let iface_id = ifaces
            .iter()
            .find_map(|i| i.map_str("external_ids", "iface-id").map(str::to_string));
        let iface_error = ifaces.iter().find_map(|i| {
            i.get("error")
                .and_then(|v| v.as_set().into_iter().next())
                .and_then(|a| a.as_str().map(str::to_string))
        });
        let name = p.get_str("name").unwrap_or_default().to_string();
        if let Some(options) = ifaces
            .first()
            .map(|i| string_map(i.get("options")))
            .filter(|o| !o.is_empty())
        {
            out.options.insert(name.clone(), options);
        }
        if let Some(first) = ifaces.first() {
            let bfd = string_map(first.get("bfd"));
            if !bfd.is_empty() {
                out.bfd.insert(name.clone(), bfd);
            }
            let link_up = first
                .get("link_state")
                .and_then(|v| v.as_set().into_iter().next())
                .and_then(|a| a.as_str().map(|s| s == "up"));
            out.ifaces.insert(
                name.clone(),
                crate::ovs_plan::IfaceStatus {
                    iface_type: first.get_str("type").unwrap_or_default().to_string(),
                    link_up,
                    bfd_status: string_map(first.get("bfd_status")),
                },
            );
        }
        out.ports.insert(
            name,
            ObservedPort {
                bridge: bridge.clone(),
                tag: ints(p.get("tag")).into_iter().next(),
                trunks: ints(p.get("trunks")),
                external_ids: string_map(p.get("external_ids")),
                iface_id,
                iface_error,
                ofport: ifaces.iter().find_map(|i| {
                    i.get("ofport")
                        .and_then(|v| v.as_set().into_iter().next())
                        .and_then(|a| a.as_i64())
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n > 0)
                }),
            },
        );
    }
    out
}

fn named(n: &str) -> Value {
    Value::Atom(Atom::NamedUuid(n.to_string()))
}

fn opt_int(v: Option<u16>) -> Value {
    Value::set(v.map(i64::from))
}

fn int_set(s: &BTreeSet<u16>) -> Value {
    Value::set(s.iter().map(|t| i64::from(*t)))
}

fn by_name(name: &str) -> Vec<Condition> {
    vec![Condition::eq("name", name)]
}

/// Conditions selecting the row named `name` of `table`: by `_uuid` when the replica has it
/// (ovsdb-server has no index on `name` for conditions: a name match scans the table, which
/// costs a second per 1000 updates at 10,000 ports), by name otherwise.
fn row_of(index: &HashMap<(&str, &str), Uuid>, table: &str, name: &str) -> Vec<Condition> {
    match index.get(&(table, name)) {
        Some(u) => vec![Condition::uuid(*u)],
        None => by_name(name),
    }
}

/// (table, name) → row uuid for the Bridge, Port and Interface rows of a snapshot.
fn name_index(snap: &Snapshot) -> HashMap<(&'static str, &str), Uuid> {
    let mut idx = HashMap::new();
    for table in ["Bridge", "Port", "Interface"] {
        for r in snap.rows(table) {
            if let Some(n) = r.get_str("name") {
                idx.insert((table, n), r.uuid);
            }
        }
    }
    idx
}

/// The operations of one transaction for `changes`. Ports added to a bridge created in the
/// same transaction go straight into the bridge's insert.
pub fn operations(changes: &[OvsChange], snap: &Snapshot) -> Result<Vec<Operation>, String> {
    let index = name_index(snap);
    let mut ops = Vec::new();
    let mut new_bridges: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut owned_new: BTreeSet<String> = BTreeSet::new();
    for c in changes {
        if let OvsChange::CreateBridge {
            name,
            datapath_type,
            owned,
        } = c
        {
            new_bridges.insert(name.clone(), (datapath_type.clone(), Vec::new()));
            if *owned {
                owned_new.insert(name.clone());
            }
        }
    }
    let mut n = 0usize;
    let mut add_port = |ops: &mut Vec<Operation>,
                        name: &str,
                        iface_type: &str,
                        options: &BTreeMap<String, String>,
                        port_row: RowValues|
     -> String {
        n += 1;
        let (ifn, pn) = (format!("i{n}"), format!("p{n}"));
        let mut iface = RowValues::from([
            ("name", Value::from(name)),
            ("type", Value::from(iface_type)),
        ]);
        if !options.is_empty() {
            iface.insert("options", Value::string_map(options.clone()));
        }
        ops.push(Operation::Insert {
            table: "Interface".into(),
            row: iface,
            uuid_name: Some(ifn.clone()),
            uuid: None,
        });
        let mut row = port_row;
        row.insert("name", Value::from(name));
        row.insert("interfaces", named(&ifn));
        ops.push(Operation::Insert {
            table: "Port".into(),
            row,
            uuid_name: Some(pn.clone()),
            uuid: None,
        });
        pn
    };
    for c in changes {
        match c {
            OvsChange::CreateBridge { name, .. } => {
                // The bridge's own internal port, as ovs-vsctl add-br makes it.
                let pn = add_port(
                    &mut ops,
                    name,
                    "internal",
                    &BTreeMap::new(),
                    RowValues::new(),
                );
                new_bridges
                    .get_mut(name)
                    .expect("collected above")
                    .1
                    .push(pn);
            }
            OvsChange::SetDatapathType {
                bridge,
                datapath_type,
            } => ops.push(Operation::Update {
                table: "Bridge".into(),
                conditions: row_of(&index, "Bridge", bridge),
                row: RowValues::from([("datapath_type", Value::from(datapath_type.as_str()))]),
            }),
            OvsChange::AddPort {
                bridge,
                name,
                tag,
                trunks,
                iface_type,
                external_ids,
                options,
            } => {
                let row = RowValues::from([
                    ("tag", opt_int(*tag)),
                    ("trunks", int_set(trunks)),
                    ("external_ids", Value::string_map(external_ids.clone())),
                ]);
                let pn = add_port(&mut ops, name, iface_type, options, row);
                if let Some(b) = new_bridges.get_mut(bridge) {
                    b.1.push(pn);
                } else {
                    ops.push(Operation::Mutate {
                        table: "Bridge".into(),
                        conditions: row_of(&index, "Bridge", bridge),
                        mutations: vec![Mutation::new("ports", Mutator::Insert, named(&pn))],
                    });
                }
            }
            OvsChange::SetTag { port, tag } => ops.push(Operation::Update {
                table: "Port".into(),
                conditions: row_of(&index, "Port", port),
                row: RowValues::from([("tag", opt_int(*tag))]),
            }),
            OvsChange::SetTrunks { port, trunks } => ops.push(Operation::Update {
                table: "Port".into(),
                conditions: row_of(&index, "Port", port),
                row: RowValues::from([("trunks", int_set(trunks))]),
            }),
            OvsChange::SetExternalIds { port, external_ids } => ops.push(Operation::Update {
                table: "Port".into(),
                conditions: row_of(&index, "Port", port),
                row: RowValues::from([("external_ids", Value::string_map(external_ids.clone()))]),
            }),
            OvsChange::SetOptions { port, options } => ops.push(Operation::Update {
                table: "Interface".into(),
                conditions: row_of(&index, "Interface", port),
                row: RowValues::from([("options", Value::string_map(options.clone()))]),
            }),
            OvsChange::SetBfd { port, bfd } => ops.push(Operation::Update {
                table: "Interface".into(),
                conditions: row_of(&index, "Interface", port),
                row: RowValues::from([("bfd", Value::string_map(bfd.clone()))]),
            }),
            OvsChange::DeleteBridge { bridge } => {
                let uuid = *index
                    .get(&("Bridge", bridge.as_str()))
                    .ok_or_else(|| bridge.clone())?;
                ops.push(Operation::Mutate {
                    table: "Open_vSwitch".into(),
                    conditions: vec![],
                    mutations: vec![Mutation::new("bridges", Mutator::Delete, Value::from(uuid))],
                });
            }
            OvsChange::DeletePort { bridge, port } => {
                let uuid = *index
                    .get(&("Port", port.as_str()))
                    .ok_or_else(|| port.clone())?;
                ops.push(Operation::Mutate {
                    table: "Bridge".into(),
                    conditions: row_of(&index, "Bridge", bridge),
                    mutations: vec![Mutation::new("ports", Mutator::Delete, Value::from(uuid))],
                });
            }
        }
    }
    for (k, (name, (dp, ports))) in new_bridges.into_iter().enumerate() {
        // uuid-names are identifiers: [A-Za-z_][A-Za-z0-9_]*.
        let bn = format!("b{k}");
        let mut row = RowValues::from([
            ("name", Value::from(name.as_str())),
            ("datapath_type", Value::from(dp.as_str())),
            (
                "ports",
                Value::Set(ports.iter().map(|p| Atom::NamedUuid(p.clone())).collect()),
            ),
        ]);
        if owned_new.contains(&name) {
            // Only the agent's flows forward on a bridge it owns: no NORMAL flow, not even
            // after ovs-vswitchd restarts and before the agent has rewritten its flows.
            row.insert("fail_mode", Value::from("secure"));
            row.insert(
                "external_ids",
                Value::string_map([(OWNER_KEY.to_string(), OWNER_VALUE.to_string())]),
            );
        }
        ops.push(Operation::Insert {
            table: "Bridge".into(),
            row,
            uuid_name: Some(bn.clone()),
            uuid: None,
        });
        ops.push(Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::new("bridges", Mutator::Insert, named(&bn))],
        });
    }
    if !ops.is_empty() {
        // Bump next_cfg as ovs-vsctl does: ovs-vswitchd 3.1 (userspace datapath) was seen to
        // leave a port's trunks at their old value after a trunks-only change without it.
        ops.push(Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::new("next_cfg", Mutator::Add, Value::from(1i64))],
        });
        ops.push(Operation::Comment(format!(
            "crosspod-agent: {} changes",
            changes.len()
        )));
    }
    Ok(ops)
}

impl OvsBackend for OvsdbBackend {
    type Error = OvsBackendError;

    async fn observe(&self) -> Result<ObservedOvs, OvsBackendError> {
        Ok(observed_from(&self.replica.snapshot()))
    }

    async fn apply(&self, changes: &[OvsChange]) -> Result<(), OvsBackendError> {
        let snap = self.replica.snapshot();
        let ops = operations(changes, &snap).map_err(|port| OvsBackendError::UnknownPort {
            endpoint: self.client.endpoint().to_string(),
            port,
        })?;
        if ops.is_empty() {
            return Ok(());
        }
        let before = snap.seq;
        // Owned: the operations' values are freed while the server works, not after.
        self.client
            .transact_owned(DB, ops)
            .await
            .map_err(|e| self.error(e))?;
        // Our own update may arrive after the reply: wait for it (bounded) so the next pass
        // sees what we wrote.
        let _ = self
            .replica
            .wait_for(Duration::from_secs(2), |s| s.seq > before)
            .await;
        Ok(())
    }

    async fn changed(&self) {
        let mut rx = self.changes.lock().await;
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

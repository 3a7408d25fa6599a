//! The Open_vSwitch schema in crosspod's terms: bridges, ports, interfaces.
//!
//! [`TxnBuilder`] accumulates operations (with named-uuids and the bridge `ports` mutate) so
//! a whole change set is one transaction and one round trip. Its `ensure_*` methods compare
//! with a replica [`View`] and add operations only for real differences, so reconciling an
//! unchanged switch sends nothing at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::client::Client;
use crate::error::Result;
use crate::ops::{Condition, Mutation, Mutator, Name, OpResult, Operation, RowValues};
use crate::replica::{MonitorRequest, Replica, Row, Snapshot};
use crate::value::{Atom, Value};

/// The database name.
pub const DB: &str = "Open_vSwitch";

/// Desired state of a bridge. Map keys listed are ensured; other keys are left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Bridge name (also the name of its internal port and interface).
    pub name: String,
    /// `system` or `netdev`; `None` leaves it as it is.
    pub datapath_type: Option<String>,
    /// `standalone` or `secure`; `None` leaves it as it is.
    pub fail_mode: Option<String>,
    /// `external_ids` keys to ensure.
    pub external_ids: BTreeMap<String, String>,
}

impl BridgeSpec {
    /// A bridge with only a name.
    pub fn new(name: &str) -> Self {
        BridgeSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
}

/// Desired state of a port with its single interface of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSpec {
    /// Port and interface name.
    pub name: String,
    /// Interface type (`""` system, `internal`, `patch`, ...); `None` means `""`.
    pub iface_type: Option<String>,
    /// Access VLAN; `None` means untagged (trunk).
    pub tag: Option<u16>,
    /// Trunked VLANs; empty means all.
    pub trunks: Vec<u16>,
    /// Port `external_ids` keys to ensure.
    pub external_ids: BTreeMap<String, String>,
    /// Interface `external_ids` keys to ensure (`iface-id` lives here).
    pub iface_external_ids: BTreeMap<String, String>,
    /// Interface `options` keys to ensure.
    pub options: BTreeMap<String, String>,
}

impl PortSpec {
    /// A port with only a name.
    pub fn new(name: &str) -> Self {
        PortSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
}

/// The tables and columns this module reads, for [`Client::monitor`].
pub fn monitor_requests() -> Vec<MonitorRequest> {
    vec![
        MonitorRequest::new("Open_vSwitch", &["bridges", "cur_cfg", "next_cfg"]),
        MonitorRequest::new(
            "Bridge",
            &[
                "name",
                "ports",
                "datapath_type",
                "fail_mode",
                "external_ids",
            ],
        ),
        MonitorRequest::new(
            "Port",
            &["name", "interfaces", "tag", "trunks", "external_ids"],
        ),
        MonitorRequest::new(
            "Interface",
            &["name", "type", "external_ids", "options", "ofport", "error"],
        ),
    ]
}

/// Starts the standard monitor of the switch tables.
pub async fn monitor(client: &Client) -> Result<Replica> {
    client.monitor(DB, monitor_requests()).await
}

/// Name indexes over one snapshot, built once per reconcile pass.
pub struct View {
    snap: Arc<Snapshot>,
    bridges: HashMap<String, Arc<Row>>,
    ports: HashMap<String, Arc<Row>>,
    ifaces: HashMap<String, Arc<Row>>,
    port_bridge: HashMap<Uuid, Uuid>,
}

fn by_name(snap: &Snapshot, table: &str) -> HashMap<String, Arc<Row>> {
    snap.rows(table)
        .filter_map(|r| Some((r.get_str("name")?.to_string(), r.clone())))
        .collect()
}

fn uuids(v: Option<&Value>) -> Vec<Uuid> {
    v.map(|v| v.as_set().iter().filter_map(Atom::as_uuid).collect())
        .unwrap_or_default()
}

impl View {
    /// Indexes a snapshot of a [`monitor`] replica.
    pub fn new(snap: Arc<Snapshot>) -> View {
        let mut port_bridge = HashMap::new();
        for b in snap.rows("Bridge") {
            for p in uuids(b.get("ports")) {
                port_bridge.insert(p, b.uuid);
            }
        }
        View {
            bridges: by_name(&snap, "Bridge"),
            ports: by_name(&snap, "Port"),
            ifaces: by_name(&snap, "Interface"),
            port_bridge,
            snap,
        }
    }

    /// The snapshot indexed.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// A bridge row by name.
    pub fn bridge(&self, name: &str) -> Option<&Arc<Row>> {
        self.bridges.get(name)
    }

    /// A port row by name.
    pub fn port(&self, name: &str) -> Option<&Arc<Row>> {
        self.ports.get(name)
    }

    /// An interface row by name.
    pub fn interface(&self, name: &str) -> Option<&Arc<Row>> {
        self.ifaces.get(name)
    }

    /// The name of the bridge holding a port.
    pub fn bridge_of_port(&self, port: &str) -> Option<&str> {
        let p = self.ports.get(port)?;
        let b = self.port_bridge.get(&p.uuid)?;
        self.snap.row("Bridge", b)?.get_str("name")
    }

    /// Names of the ports on a bridge.
    pub fn ports_of_bridge(&self, bridge: &str) -> Vec<String> {
        let Some(b) = self.bridges.get(bridge) else {
            return Vec::new();
        };
        uuids(b.get("ports"))
            .iter()
            .filter_map(|u| {
                self.snap
                    .row("Port", u)?
                    .get_str("name")
                    .map(str::to_string)
            })
            .collect()
    }

    /// Interfaces whose `external_ids:iface-id` is `iface_id` (how Nova/os-vif marks VM ports).
    pub fn interfaces_by_iface_id(&self, iface_id: &str) -> Vec<Arc<Row>> {
        find_interfaces_by_iface_id(&self.snap, iface_id)
    }
}

/// Interfaces whose `external_ids:iface-id` is `iface_id`.
pub fn find_interfaces_by_iface_id(snap: &Snapshot, iface_id: &str) -> Vec<Arc<Row>> {
    snap.rows("Interface")
        .filter(|r| r.map_str("external_ids", "iface-id") == Some(iface_id))
        .cloned()
        .collect()
}

/// True when `c` is `name == bridge`, the condition [`TxnBuilder::add_port`] writes.
fn is_name_eq(c: &Condition, bridge: &str) -> bool {
    c.function == crate::ops::Function::Eq && c.column == "name" && c.value.as_str() == Some(bridge)
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::string_map(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn opt_str(s: &Option<String>) -> Value {
    Value::set(s.iter().map(String::as_str))
}

fn tag_value(tag: Option<u16>) -> Value {
    Value::set(tag.map(i64::from))
}

fn trunks_value(trunks: &[u16]) -> Value {
    Value::set(trunks.iter().map(|t| i64::from(*t)))
}

/// Mutations that make the listed keys of a map column hold the given values, leaving other
/// keys alone; empty when they already do.
fn map_mutations(
    column: &str,
    current: Option<&Value>,
    want: &BTreeMap<String, String>,
) -> Vec<Mutation> {
    let differ: Vec<(&String, &String)> = want
        .iter()
        .filter(|(k, v)| {
            current.and_then(|c| c.map_get(k)).and_then(Atom::as_str) != Some(v.as_str())
        })
        .collect();
    if differ.is_empty() {
        return Vec::new();
    }
    vec![
        Mutation::new(
            column,
            Mutator::Delete,
            Value::set(differ.iter().map(|(k, _)| k.as_str())),
        ),
        Mutation::new(
            column,
            Mutator::Insert,
            Value::string_map(differ.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        ),
    ]
}

/// Accumulates operations for one transaction.
#[derive(Debug, Default, Clone)]
pub struct TxnBuilder {
    ops: Vec<Operation>,
    next_name: u32,
    /// Index of the `ports` mutate already emitted per (bridge condition, mutator): later
    /// ports join it, so a batch rewrites each bridge's port set once, not once per port.
    /// A list searched by equality: a transaction touches few bridges, and a formatted key
    /// per port cost more than the search.
    ports_mutates: Vec<(Condition, Mutator, usize)>,
    /// Ports that joined a `ports` mutate (by its index in `ops`) and are not yet in its set:
    /// collected in a list and put into the set in one sorted build when the operations are
    /// read or sent, instead of one tree insert per port (a fifth of building 1,000 ports).
    pending_ports: Vec<(usize, Atom)>,
}

impl TxnBuilder {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations so far.
    pub fn ops(&mut self) -> &[Operation] {
        self.merge_pending_ports();
        &self.ops
    }

    /// Puts the ports collected by [`Self::bridge_ports_at`] into their mutates' sets.
    fn merge_pending_ports(&mut self) {
        if self.pending_ports.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending_ports);
        // Stable: each mutate's ports stay grouped in the order they came.
        pending.sort_by_key(|(i, _)| *i);
        let mut rest = pending.as_mut_slice();
        while let Some(&(i, _)) = rest.first() {
            let n = rest.iter().take_while(|(j, _)| *j == i).count();
            let (group, tail) = rest.split_at_mut(n);
            rest = tail;
            if let Some(Operation::Mutate { mutations, .. }) = self.ops.get_mut(i) {
                if let Some(Value::Set(set)) = mutations.first_mut().map(|m| &mut m.value) {
                    let mut atoms: Vec<Atom> = group
                        .iter_mut()
                        .map(|(_, a)| std::mem::replace(a, Atom::Integer(0)))
                        .collect();
                    atoms.extend(std::mem::take(set));
                    *set = atoms.into_iter().collect();
                }
            }
        }
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// True when some operation writes.
    pub fn has_writes(&self) -> bool {
        self.ops.iter().any(Operation::is_write)
    }

    /// Adds any operation.
    pub fn op(&mut self, op: Operation) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// The next uuid-name, `prefix` and a counter, written by hand: two per port, and the
    /// formatting machinery showed in the profile of building 1,000 ports.
    fn name(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        let mut digits = [0u8; 10];
        let mut n = self.next_name;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut s = String::with_capacity(prefix.len() + digits.len() - i);
        s.push_str(prefix);
        s.extend(digits[i..].iter().map(|&d| char::from(d)));
        s
    }

    /// Adds `port` to (or removes it from) a bridge's `ports`, merged into this transaction's
    /// earlier mutate of the same bridge when there is one (named-uuids may be referenced
    /// before their insert within a transaction).
    fn bridge_ports(&mut self, bridge: Condition, mutator: Mutator, port: Atom) {
        let known = self
            .ports_mutates
            .iter()
            .find(|(c, m, _)| *m == mutator && *c == bridge)
            .map(|(_, _, i)| *i);
        self.bridge_ports_at(known, || bridge, mutator, port);
    }

    /// [`Self::bridge_ports`] for the bridge named `bridge`, without building its condition
    /// per port (a 1,000-port batch looks the same bridge up 1,000 times).
    fn named_bridge_ports(&mut self, bridge: &str, mutator: Mutator, port: Atom) {
        let known = self
            .ports_mutates
            .iter()
            .find(|(c, m, _)| *m == mutator && is_name_eq(c, bridge))
            .map(|(_, _, i)| *i);
        self.bridge_ports_at(known, || Condition::eq("name", bridge), mutator, port);
    }

    fn bridge_ports_at(
        &mut self,
        known: Option<usize>,
        bridge: impl FnOnce() -> Condition,
        mutator: Mutator,
        port: Atom,
    ) {
        if let Some(i) = known {
            self.pending_ports.push((i, port));
            return;
        }
        let bridge = bridge();
        self.ports_mutates
            .push((bridge.clone(), mutator, self.ops.len()));
        self.ops.push(Operation::Mutate {
            table: "Bridge".into(),
            conditions: vec![bridge],
            mutations: vec![Mutation::new("ports", mutator, Value::set([port]))],
        });
    }

    fn insert(&mut self, table: &'static str, row: RowValues, uuid_name: String) {
        self.ops.push(Operation::Insert {
            table: Name::Borrowed(table),
            row,
            uuid_name: Some(uuid_name),
            uuid: None,
        });
    }

    /// Creates a bridge (with its internal port, like `ovs-vsctl add-br`) without looking:
    /// fails at commit if the name exists.
    pub fn add_bridge(&mut self, spec: &BridgeSpec) -> &mut Self {
        let (ni, np, nb) = (self.name("i"), self.name("p"), self.name("b"));
        self.insert(
            "Interface",
            RowValues::from([
                ("name", Value::from(spec.name.as_str())),
                ("type", Value::from("internal")),
            ]),
            ni.clone(),
        );
        self.insert(
            "Port",
            RowValues::from([
                ("name", Value::from(spec.name.as_str())),
                ("interfaces", Value::from(Atom::NamedUuid(ni))),
            ]),
            np.clone(),
        );
        let mut row = RowValues::from([
            ("name", Value::from(spec.name.as_str())),
            ("ports", Value::from(Atom::NamedUuid(np))),
        ]);
        if let Some(d) = &spec.datapath_type {
            row.insert("datapath_type", d.as_str());
        }
        if spec.fail_mode.is_some() {
            row.insert("fail_mode", opt_str(&spec.fail_mode));
        }
        if !spec.external_ids.is_empty() {
            row.insert("external_ids", string_map(&spec.external_ids));
        }
        self.insert("Bridge", row, nb.clone());
        self.ops.push(Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::new(
                "bridges",
                Mutator::Insert,
                Value::set([Atom::NamedUuid(nb)]),
            )],
        });
        self
    }

    /// Removes a bridge (its ports and interfaces go with it: they are no longer referenced).
    pub fn delete_bridge(&mut self, bridge_uuid: Uuid) -> &mut Self {
        self.ops.push(Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::new(
                "bridges",
                Mutator::Delete,
                Value::set([bridge_uuid]),
            )],
        });
        self
    }

    /// Creates a port and its interface on the bridge named `bridge` without looking (one
    /// insert each plus the bridge's `ports` mutate): fails at commit if the name exists.
    pub fn add_port(&mut self, bridge: &str, spec: &PortSpec) -> &mut Self {
        let np = self.insert_port_rows(spec);
        self.named_bridge_ports(bridge, Mutator::Insert, Atom::NamedUuid(np));
        self
    }

    fn add_port_where(&mut self, bridge: Condition, spec: &PortSpec) -> &mut Self {
        let np = self.insert_port_rows(spec);
        self.bridge_ports(bridge, Mutator::Insert, Atom::NamedUuid(np));
        self
    }

    /// Inserts `spec`'s interface and port rows; returns the port's uuid-name. A port's one
    /// interface and its tag are written as bare atoms (RFC 7047 5.1 allows a one-element
    /// set so), which saves a set per row.
    fn insert_port_rows(&mut self, spec: &PortSpec) -> String {
        let (ni, np) = (self.name("i"), self.name("p"));
        let mut irow = RowValues::with_capacity(4);
        irow.insert("name", spec.name.as_str());
        if let Some(t) = &spec.iface_type {
            irow.insert("type", t.as_str());
        }
        if !spec.iface_external_ids.is_empty() {
            irow.insert("external_ids", string_map(&spec.iface_external_ids));
        }
        if !spec.options.is_empty() {
            irow.insert("options", string_map(&spec.options));
        }
        self.insert("Interface", irow, ni.clone());
        let mut prow = RowValues::with_capacity(5);
        prow.insert("name", spec.name.as_str());
        prow.insert("interfaces", Atom::NamedUuid(ni));
        if let Some(tag) = spec.tag {
            prow.insert("tag", i64::from(tag));
        }
        if !spec.trunks.is_empty() {
            prow.insert("trunks", trunks_value(&spec.trunks));
        }
        if !spec.external_ids.is_empty() {
            prow.insert("external_ids", string_map(&spec.external_ids));
        }
        self.insert("Port", prow, np.clone());
        np
    }

    /// Sets (or with `None` clears) a port's access VLAN, by port name.
    pub fn set_tag(&mut self, port: &str, tag: Option<u16>) -> &mut Self {
        self.update("Port", Condition::eq("name", port), "tag", tag_value(tag))
    }

    /// Sets a port's trunked VLANs (empty: all), by port name.
    pub fn set_trunks(&mut self, port: &str, trunks: &[u16]) -> &mut Self {
        self.update(
            "Port",
            Condition::eq("name", port),
            "trunks",
            trunks_value(trunks),
        )
    }

    fn update(
        &mut self,
        table: &'static str,
        cond: Condition,
        column: &'static str,
        v: Value,
    ) -> &mut Self {
        self.ops.push(Operation::Update {
            table: table.into(),
            conditions: vec![cond],
            row: RowValues::from([(column, v)]),
        });
        self
    }

    /// Detaches a port from its bridge; the port and its interfaces are then garbage.
    pub fn delete_port(&mut self, bridge_uuid: Uuid, port_uuid: Uuid) -> &mut Self {
        self.bridge_ports(
            Condition::uuid(bridge_uuid),
            Mutator::Delete,
            Atom::Uuid(port_uuid),
        );
        self
    }

    /// Adds operations that make the bridge match `spec`, only where it differs from `view`.
    pub fn ensure_bridge(&mut self, view: &View, spec: &BridgeSpec) -> &mut Self {
        let Some(b) = view.bridge(&spec.name) else {
            return self.add_bridge(spec);
        };
        let mut row = RowValues::new();
        if let Some(d) = &spec.datapath_type {
            if b.get_str("datapath_type") != Some(d.as_str()) {
                row.insert("datapath_type", d.as_str());
            }
        }
        if spec.fail_mode.is_some() && b.get_str("fail_mode") != spec.fail_mode.as_deref() {
            row.insert("fail_mode", opt_str(&spec.fail_mode));
        }
        let cond = Condition::uuid(b.uuid);
        if !row.is_empty() {
            self.ops.push(Operation::Update {
                table: "Bridge".into(),
                conditions: vec![cond.clone()],
                row,
            });
        }
        let m = map_mutations("external_ids", b.get("external_ids"), &spec.external_ids);
        if !m.is_empty() {
            self.ops.push(Operation::Mutate {
                table: "Bridge".into(),
                conditions: vec![cond],
                mutations: m,
            });
        }
        self
    }

    /// Adds operations that make port `spec.name` exist on `bridge` with the given settings,
    /// only where it differs from `view`. The bridge must exist in `view` or be ensured earlier
    /// in this transaction (then it is found by name at commit).
    pub fn ensure_port(&mut self, view: &View, bridge: &str, spec: &PortSpec) -> &mut Self {
        let bridge_cond = match view.bridge(bridge) {
            Some(b) => Condition::uuid(b.uuid),
            None => Condition::eq("name", bridge),
        };
        let Some(p) = view.port(&spec.name) else {
            return self.add_port_where(bridge_cond, spec);
        };
        let on = view.bridge_of_port(&spec.name);
        if on != Some(bridge) {
            if let Some(old) = on.and_then(|n| view.bridge(n)) {
                self.delete_port(old.uuid, p.uuid);
            }
            self.bridge_ports(bridge_cond, Mutator::Insert, Atom::Uuid(p.uuid));
        }
        let pc = Condition::uuid(p.uuid);
        let mut row = RowValues::new();
        let want_tag = tag_value(spec.tag);
        if p.get("tag") != Some(&want_tag) {
            row.insert("tag", want_tag);
        }
        let want_trunks = trunks_value(&spec.trunks);
        if p.get("trunks") != Some(&want_trunks) {
            row.insert("trunks", want_trunks);
        }
        if !row.is_empty() {
            self.ops.push(Operation::Update {
                table: "Port".into(),
                conditions: vec![pc.clone()],
                row,
            });
        }
        let m = map_mutations("external_ids", p.get("external_ids"), &spec.external_ids);
        if !m.is_empty() {
            self.ops.push(Operation::Mutate {
                table: "Port".into(),
                conditions: vec![pc],
                mutations: m,
            });
        }
        if let Some(i) = view.interface(&spec.name) {
            let ic = Condition::uuid(i.uuid);
            let want_type = spec.iface_type.as_deref().unwrap_or("");
            if i.get_str("type").unwrap_or("") != want_type {
                self.update("Interface", ic.clone(), "type", Value::from(want_type));
            }
            let mut m = map_mutations(
                "external_ids",
                i.get("external_ids"),
                &spec.iface_external_ids,
            );
            m.extend(map_mutations("options", i.get("options"), &spec.options));
            if !m.is_empty() {
                self.ops.push(Operation::Mutate {
                    table: "Interface".into(),
                    conditions: vec![ic],
                    mutations: m,
                });
            }
        }
        self
    }

    /// Removes port `name` from whatever bridge holds it, if it exists in `view`.
    pub fn remove_port(&mut self, view: &View, name: &str) -> &mut Self {
        if let (Some(p), Some(b)) = (
            view.port(name),
            view.bridge_of_port(name).and_then(|b| view.bridge(b)),
        ) {
            self.delete_port(b.uuid, p.uuid);
        }
        self
    }

    /// Removes bridge `name` (with its ports and interfaces), if it exists in `view`.
    pub fn remove_bridge(&mut self, view: &View, name: &str) -> &mut Self {
        if let Some(b) = view.bridge(name) {
            self.delete_bridge(b.uuid);
        }
        self
    }

    /// Sends everything as one transaction; sends nothing (and returns no results) when empty.
    pub async fn commit(mut self, client: &Client) -> Result<Vec<OpResult>> {
        self.merge_pending_ports();
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        client.transact_owned(DB, self.ops).await
    }
}

//! Database schemas (RFC 7047 section 3.2), parsed from `get_schema`, used to check column
//! names and value types before a transaction leaves the client and to normalise decoded values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::error::Result;
use crate::value::{decode_err, Atom, Value};

/// The kinds of atom a column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicType {
    /// `integer`
    Integer,
    /// `real`
    Real,
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `uuid`
    Uuid,
}

impl AtomicType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            _ => return None,
        })
    }
}

/// The type of a key or value, with its constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseType {
    /// The atomic type.
    pub atomic: AtomicType,
    /// Allowed values, when the schema lists them.
    pub enum_values: Option<BTreeSet<Atom>>,
    /// Inclusive integer range.
    pub min_integer: Option<i64>,
    /// Inclusive integer range.
    pub max_integer: Option<i64>,
    /// Referenced table of a uuid.
    pub ref_table: Option<String>,
}

impl BaseType {
    fn parse(j: &Json) -> Result<Self> {
        let (atomic, obj) = match j {
            Json::String(s) => (s.as_str(), None),
            Json::Object(o) => (
                o.get("type")
                    .and_then(Json::as_str)
                    .ok_or_else(|| decode_err("base type", format!("{j}")))?,
                Some(o),
            ),
            _ => return Err(decode_err("base type", format!("{j}"))),
        };
        let atomic = AtomicType::parse(atomic)
            .ok_or_else(|| decode_err("atomic type", atomic.to_string()))?;
        let mut bt = BaseType {
            atomic,
            enum_values: None,
            min_integer: None,
            max_integer: None,
            ref_table: None,
        };
        if let Some(o) = obj {
            if let Some(e) = o.get("enum") {
                bt.enum_values = Some(Value::from_json(e)?.as_set());
            }
            bt.min_integer = o.get("minInteger").and_then(Json::as_i64);
            bt.max_integer = o.get("maxInteger").and_then(Json::as_i64);
            bt.ref_table = o.get("refTable").and_then(Json::as_str).map(str::to_string);
        }
        Ok(bt)
    }

    /// Checks one atom against this type; `Err` says why it does not fit.
    pub fn check(&self, a: &Atom) -> std::result::Result<(), String> {
        let ok = matches!(
            (self.atomic, a),
            (AtomicType::Integer, Atom::Integer(_))
                | (AtomicType::Real, Atom::Real(_) | Atom::Integer(_))
                | (AtomicType::Boolean, Atom::Boolean(_))
                | (AtomicType::String, Atom::String(_))
                | (AtomicType::Uuid, Atom::Uuid(_) | Atom::NamedUuid(_))
        );
        if !ok {
            return Err(format!("{a:?} is not of type {:?}", self.atomic));
        }
        if let Some(e) = &self.enum_values {
            if !e.contains(a) {
                return Err(format!("{a:?} is not one of {e:?}"));
            }
        }
        if let Atom::Integer(i) = a {
            if self.min_integer.is_some_and(|m| *i < m) || self.max_integer.is_some_and(|m| *i > m)
            {
                return Err(format!(
                    "{i} is outside [{:?}, {:?}]",
                    self.min_integer, self.max_integer
                ));
            }
        }
        Ok(())
    }

    /// Decodes an atom of this type (reals may arrive as integers in JSON).
    fn decode(&self, j: &Json) -> Result<Atom> {
        let a = Atom::from_json(j)?;
        Ok(match (self.atomic, a) {
            (AtomicType::Real, Atom::Integer(i)) => Atom::Real(i as f64),
            (_, a) => a,
        })
    }
}

/// A column's full type: key, optional value (then it is a map), element count bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    /// Key (or element) type.
    pub key: BaseType,
    /// Value type for maps.
    pub value: Option<BaseType>,
    /// Minimum number of elements (0 or 1).
    pub min: usize,
    /// Maximum number of elements; `None` is unlimited.
    pub max: Option<usize>,
}

impl ColumnType {
    fn parse(j: &Json) -> Result<Self> {
        match j {
            Json::String(_) => Ok(ColumnType {
                key: BaseType::parse(j)?,
                value: None,
                min: 1,
                max: Some(1),
            }),
            Json::Object(o) => {
                let key = BaseType::parse(
                    o.get("key")
                        .ok_or_else(|| decode_err("column type", format!("no key in {j}")))?,
                )?;
                let value = o.get("value").map(BaseType::parse).transpose()?;
                let min = o.get("min").and_then(Json::as_u64).unwrap_or(1) as usize;
                let max = match o.get("max") {
                    None => Some(1),
                    Some(Json::String(s)) if s == "unlimited" => None,
                    Some(m) => Some(
                        m.as_u64()
                            .ok_or_else(|| decode_err("column max", format!("{m}")))?
                            as usize,
                    ),
                };
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err(decode_err("column type", format!("{j}"))),
        }
    }

    /// Exactly one atom, no map: the only kind whose update2 diff is a plain replacement.
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// A map column.
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Decodes a JSON datum of this type into a normalised [`Value`].
    pub fn decode(&self, j: &Json) -> Result<Value> {
        if let Some(vt) = &self.value {
            let Json::Array(a) = j else {
                return Err(decode_err("map datum", format!("{j}")));
            };
            if a.len() != 2 || a[0] != "map" {
                return Err(decode_err("map datum", format!("{j}")));
            }
            let mut m = BTreeMap::new();
            for p in a[1].as_array().into_iter().flatten() {
                match p.as_array() {
                    Some(kv) if kv.len() == 2 => {
                        m.insert(self.key.decode(&kv[0])?, vt.decode(&kv[1])?);
                    }
                    _ => return Err(decode_err("map pair", format!("{p}"))),
                }
            }
            return Ok(Value::Map(m));
        }
        let set = match j {
            Json::Array(a) if a.len() == 2 && a[0] == "set" => a[1]
                .as_array()
                .ok_or_else(|| decode_err("set datum", format!("{j}")))?
                .iter()
                .map(|e| self.key.decode(e))
                .collect::<Result<BTreeSet<_>>>()?,
            _ => [self.key.decode(j)?].into_iter().collect(),
        };
        if self.is_scalar() {
            match set.into_iter().next() {
                Some(a) => Ok(Value::Atom(a)),
                None => Err(decode_err("scalar datum", format!("empty set {j}"))),
            }
        } else {
            Ok(Value::Set(set))
        }
    }

    /// The value a column holds when nothing was written (RFC 7047 section 5.2.1).
    pub fn default_value(&self) -> Value {
        if self.value.is_some() {
            return Value::Map(BTreeMap::new());
        }
        let atom = match self.key.atomic {
            AtomicType::Integer => Atom::Integer(0),
            AtomicType::Real => Atom::Real(0.0),
            AtomicType::Boolean => Atom::Boolean(false),
            AtomicType::String => Atom::String(String::new()),
            AtomicType::Uuid => Atom::Uuid(uuid::Uuid::nil()),
        };
        match (self.min, self.is_scalar()) {
            (_, true) => Value::Atom(atom),
            (0, false) => Value::Set(BTreeSet::new()),
            _ => Value::Set([atom].into_iter().collect()),
        }
    }

    /// Checks a whole value against this type; `Err` says why it does not fit.
    pub fn check(&self, v: &Value) -> std::result::Result<(), String> {
        let n = match (v, &self.value) {
            (Value::Map(m), Some(vt)) => {
                for (k, val) in m {
                    self.key.check(k).map_err(|e| format!("map key: {e}"))?;
                    vt.check(val).map_err(|e| format!("map value: {e}"))?;
                }
                m.len()
            }
            (_, Some(_)) => return Err("expected a map".to_string()),
            (Value::Map(_), None) => return Err("got a map for a non-map column".to_string()),
            (Value::Atom(a), None) => {
                self.key.check(a)?;
                1
            }
            (Value::Set(s), None) => {
                for a in s {
                    self.key.check(a)?;
                }
                s.len()
            }
        };
        if n < self.min || self.max.is_some_and(|m| n > m) {
            return Err(format!(
                "{n} elements, allowed {}..{}",
                self.min,
                self.max
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            ));
        }
        Ok(())
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    /// Its type.
    pub ty: ColumnType,
    /// False for columns clients may not write.
    pub mutable: bool,
    /// Not persisted by the server.
    pub ephemeral: bool,
}

/// One table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Columns by name (without `_uuid` and `_version`).
    pub columns: BTreeMap<String, ColumnSchema>,
    /// Root tables keep unreferenced rows.
    pub is_root: bool,
    /// Column sets that must be unique.
    pub indexes: Vec<Vec<String>>,
}

/// A whole database schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSchema {
    /// Database name, e.g. `Open_vSwitch`.
    pub name: String,
    /// Schema version string.
    pub version: String,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
}

impl DatabaseSchema {
    /// Parses the `get_schema` result (or a `.ovsschema` file).
    pub fn from_json(j: &Json) -> Result<Self> {
        let name = j
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| decode_err("schema", "no name".into()))?
            .to_string();
        let version = j
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        let mut tables = BTreeMap::new();
        let tj = j
            .get("tables")
            .and_then(Json::as_object)
            .ok_or_else(|| decode_err("schema", format!("{name}: no tables")))?;
        for (tname, t) in tj {
            let mut columns = BTreeMap::new();
            for (cname, c) in t
                .get("columns")
                .and_then(Json::as_object)
                .ok_or_else(|| decode_err("table schema", format!("{tname}: no columns")))?
            {
                let ty = ColumnType::parse(c.get("type").ok_or_else(|| {
                    decode_err("column schema", format!("{tname}.{cname}: no type"))
                })?)
                .map_err(|e| decode_err("column type", format!("{tname}.{cname}: {e}")))?;
                columns.insert(
                    cname.clone(),
                    ColumnSchema {
                        ty,
                        mutable: c.get("mutable").and_then(Json::as_bool).unwrap_or(true),
                        ephemeral: c.get("ephemeral").and_then(Json::as_bool).unwrap_or(false),
                    },
                );
            }
            let indexes = t
                .get("indexes")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_array)
                        .map(|cols| {
                            cols.iter()
                                .filter_map(Json::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            tables.insert(
                tname.clone(),
                TableSchema {
                    columns,
                    is_root: t.get("isRoot").and_then(Json::as_bool).unwrap_or(false),
                    indexes,
                },
            );
        }
        Ok(DatabaseSchema {
            name,
            version,
            tables,
        })
    }

    /// The type of `table.column`, including the implicit `_uuid` and `_version`.
    pub fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.column_type_ref(table, column).cloned()
    }

    /// [`DatabaseSchema::column_type`] without the copy (a type may carry an enum set): what
    /// the per-op schema check uses, thousands of times per large transaction.
    pub fn column_type_ref(&self, table: &str, column: &str) -> Option<&ColumnType> {
        self.tables.get(table)?.column_type_ref(column)
    }
}

impl TableSchema {
    /// A column's type, `_uuid` and `_version` included.
    pub fn column_type_ref(&self, column: &str) -> Option<&ColumnType> {
        if column == "_uuid" || column == "_version" {
            return Some(uuid_column());
        }
        self.columns.get(column).map(|c| &c.ty)
    }
}

/// The type of `_uuid` and `_version`, which every table has.
fn uuid_column() -> &'static ColumnType {
    static T: std::sync::OnceLock<ColumnType> = std::sync::OnceLock::new();
    T.get_or_init(|| ColumnType {
        key: BaseType {
            atomic: AtomicType::Uuid,
            enum_values: None,
            min_integer: None,
            max_integer: None,
            ref_table: None,
        },
        value: None,
        min: 1,
        max: Some(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vswitch() -> DatabaseSchema {
        let text = std::fs::read_to_string("/usr/share/openvswitch/vswitch.ovsschema")
            .expect("FAIL: /usr/share/openvswitch/vswitch.ovsschema missing (apt-get install openvswitch-switch)");
        DatabaseSchema::from_json(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    #[test]
    fn parses_vswitch_schema_and_checks_types() {
        let s = vswitch();
        assert_eq!(s.name, "Open_vSwitch");
        let tag = s.column_type("Port", "tag").unwrap();
        assert!(!tag.is_scalar());
        assert!(tag.check(&Value::set([100i64])).is_ok());
        assert!(tag.check(&Value::set([5000i64])).is_err(), "tag is 0..4095");
        assert!(
            tag.check(&Value::set([1i64, 2])).is_err(),
            "tag is optional, max 1"
        );
        assert!(tag.check(&Value::from("x")).is_err());
        let trunks = s.column_type("Port", "trunks").unwrap();
        assert!(trunks.check(&Value::set([1i64, 2, 3])).is_ok());
        let ext = s.column_type("Interface", "external_ids").unwrap();
        assert!(ext.is_map());
        assert!(ext.check(&Value::string_map([("iface-id", "x")])).is_ok());
        assert!(ext.check(&Value::set([1i64])).is_err());
        let fm = s.column_type("Bridge", "fail_mode").unwrap();
        assert!(fm.check(&Value::set(["secure"])).is_ok());
        assert!(fm.check(&Value::set(["bogus"])).is_err());
        let name = s.column_type("Bridge", "name").unwrap();
        assert!(name.is_scalar());
        assert_eq!(
            name.decode(&serde_json::json!("br0")).unwrap(),
            Value::from("br0")
        );
        assert_eq!(
            tag.decode(&serde_json::json!(["set", []])).unwrap(),
            Value::empty_set()
        );
        assert_eq!(
            tag.decode(&serde_json::json!(7)).unwrap(),
            Value::set([7i64])
        );
    }
}

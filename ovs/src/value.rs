//! Typed OVSDB data (RFC 7047 section 5.1): atoms, sets and maps, and their JSON notation.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};
use uuid::Uuid;

use crate::error::{Error, Result};

/// One scalar OVSDB value.
#[derive(Debug, Clone)]
pub enum Atom {
    /// 64-bit integer.
    Integer(i64),
    /// Floating point number.
    Real(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string.
    String(String),
    /// Reference to a row by its UUID.
    Uuid(Uuid),
    /// Reference to a row inserted earlier in the same transaction (its `uuid-name`).
    NamedUuid(String),
}

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    /// The RFC 7047 JSON notation.
    pub fn to_json(&self) -> Json {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    /// Parses an atom from its JSON notation, without a schema (integers stay integers).
    pub fn from_json(j: &Json) -> Result<Atom> {
        match j {
            Json::Bool(b) => Ok(Atom::Boolean(*b)),
            Json::String(s) => Ok(Atom::String(s.clone())),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Ok(Atom::Integer(i)),
                None => Ok(Atom::Real(n.as_f64().unwrap_or(f64::NAN))),
            },
            Json::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
                (Some("uuid"), Some(u)) => Uuid::parse_str(u)
                    .map(Atom::Uuid)
                    .map_err(|e| decode_err("uuid atom", format!("{u:?}: {e}"))),
                (Some("named-uuid"), Some(n)) => Ok(Atom::NamedUuid(n.to_string())),
                _ => Err(decode_err("atom", format!("{j}"))),
            },
            other => Err(decode_err("atom", format!("{other}"))),
        }
    }

    /// The string inside, if this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The UUID inside, if this is a uuid atom.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Atom {}
impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl From<i64> for Atom {
    fn from(v: i64) -> Self {
        Atom::Integer(v)
    }
}
impl From<u16> for Atom {
    fn from(v: u16) -> Self {
        Atom::Integer(v.into())
    }
}
impl From<f64> for Atom {
    fn from(v: f64) -> Self {
        Atom::Real(v)
    }
}
impl From<bool> for Atom {
    fn from(v: bool) -> Self {
        Atom::Boolean(v)
    }
}
impl From<&str> for Atom {
    fn from(v: &str) -> Self {
        Atom::String(v.to_string())
    }
}
impl From<String> for Atom {
    fn from(v: String) -> Self {
        Atom::String(v)
    }
}
impl From<Uuid> for Atom {
    fn from(v: Uuid) -> Self {
        Atom::Uuid(v)
    }
}

/// A column value: one atom, a set of atoms, or a map between atoms.
///
/// Values read through a schema are normalised: a column whose type allows other than exactly
/// one element is always a [`Value::Set`] (possibly empty), never a bare atom.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// Exactly one atom.
    Atom(Atom),
    /// A set (also used for optional columns: zero or one element).
    Set(BTreeSet<Atom>),
    /// A map.
    Map(BTreeMap<Atom, Atom>),
}

impl Value {
    /// A set value from anything iterable into atoms.
    pub fn set<I: IntoIterator<Item = A>, A: Into<Atom>>(items: I) -> Value {
        Value::Set(items.into_iter().map(Into::into).collect())
    }

    /// An empty set (clears an optional column).
    pub fn empty_set() -> Value {
        Value::Set(BTreeSet::new())
    }

    /// A string-to-string map, the shape of every `external_ids` and `options` column.
    pub fn string_map<I, K, V>(items: I) -> Value
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Value::Map(
            items
                .into_iter()
                .map(|(k, v)| (Atom::String(k.into()), Atom::String(v.into())))
                .collect(),
        )
    }

    /// The RFC 7047 JSON notation. A set of exactly one element is written as that atom, as
    /// RFC 7047 allows (section 5.1, `<set>`): ovsdb-server parses the atom faster, about
    /// 10% of a 1,000-port transaction's server time spent on `["set",[x]]` tags and
    /// interfaces (issue 22).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Atom(a) => a.to_json(),
            Value::Set(s) if s.len() == 1 => s.iter().next().map(Atom::to_json).unwrap_or_default(),
            Value::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Value::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Parses a value without a schema: `["set",..]` and `["map",..]` are recognised, anything
    /// else is one atom.
    pub fn from_json(j: &Json) -> Result<Value> {
        if let Json::Array(a) = j {
            if a.len() == 2 {
                match (a[0].as_str(), &a[1]) {
                    (Some("set"), Json::Array(items)) => {
                        return Ok(Value::Set(
                            items.iter().map(Atom::from_json).collect::<Result<_>>()?,
                        ))
                    }
                    (Some("map"), Json::Array(pairs)) => {
                        let mut m = BTreeMap::new();
                        for p in pairs {
                            match p {
                                Json::Array(kv) if kv.len() == 2 => {
                                    m.insert(Atom::from_json(&kv[0])?, Atom::from_json(&kv[1])?);
                                }
                                _ => return Err(decode_err("map pair", format!("{p}"))),
                            }
                        }
                        return Ok(Value::Map(m));
                    }
                    _ => {}
                }
            }
        }
        Atom::from_json(j).map(Value::Atom)
    }

    /// The elements of this value as a set (an atom is a one-element set; a map gives nothing).
    pub fn as_set(&self) -> BTreeSet<Atom> {
        match self {
            Value::Atom(a) => [a.clone()].into_iter().collect(),
            Value::Set(s) => s.clone(),
            Value::Map(_) => BTreeSet::new(),
        }
    }

    /// The single atom of a scalar, or of a one-element set (optional columns).
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Value::Atom(a) => Some(a),
            Value::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }

    /// The string of a scalar or optional string column.
    pub fn as_str(&self) -> Option<&str> {
        self.as_atom().and_then(Atom::as_str)
    }

    /// The integer of a scalar or optional integer column.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_atom().and_then(Atom::as_i64)
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&BTreeMap<Atom, Atom>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks a string key up in a string map.
    pub fn map_get(&self, key: &str) -> Option<&Atom> {
        self.as_map()?.get(&Atom::String(key.to_string()))
    }
}

impl<A: Into<Atom>> From<A> for Value {
    fn from(a: A) -> Self {
        Value::Atom(a.into())
    }
}

pub(crate) fn decode_err(what: &str, reason: String) -> Error {
    Error::Decode {
        what: what.to_string(),
        reason,
    }
}

/// The RFC 7047 notation written straight to the serializer: the same JSON as
/// [`Atom::to_json`], without building a `serde_json::Value` first (a 1000-port transaction
/// is thousands of atoms; the intermediate tree was a third of the client's cost).
impl serde::Serialize for Atom {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        match self {
            Atom::Integer(i) => s.serialize_i64(*i),
            Atom::Real(r) => s.serialize_f64(*r),
            Atom::Boolean(b) => s.serialize_bool(*b),
            Atom::String(v) => s.serialize_str(v),
            Atom::Uuid(u) => {
                let mut buf = Uuid::encode_buffer();
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element("uuid")?;
                t.serialize_element(&*u.hyphenated().encode_lower(&mut buf))?;
                t.end()
            }
            Atom::NamedUuid(n) => {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element("named-uuid")?;
                t.serialize_element(n)?;
                t.end()
            }
        }
    }
}

/// Writes the same JSON as [`Value::to_json`] straight to the serializer.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        struct Pairs<'a>(&'a BTreeMap<Atom, Atom>);
        impl serde::Serialize for Pairs<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter())
            }
        }
        match self {
            Value::Atom(a) => a.serialize(s),
            Value::Set(set) if set.len() == 1 => match set.iter().next() {
                Some(a) => a.serialize(s),
                None => s.serialize_unit(),
            },
            Value::Set(set) => {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element("set")?;
                t.serialize_element(set)?;
                t.end()
            }
            Value::Map(m) => {
                let mut t = s.serialize_tuple(2)?;
                t.serialize_element("map")?;
                t.serialize_element(&Pairs(m))?;
                t.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_of_every_kind() {
        let u = Uuid::new_v4();
        let vals = vec![
            Value::from(5i64),
            Value::from(2.5f64),
            Value::from(true),
            Value::from("x"),
            Value::from(u),
            Value::Atom(Atom::NamedUuid("row1".into())),
            Value::set([1i64, 2, 3]),
            Value::string_map([("iface-id", "abc")]),
            Value::empty_set(),
        ];
        for v in vals {
            let back = Value::from_json(&v.to_json()).unwrap();
            assert_eq!(back, v, "{}", v.to_json());
        }
    }

    #[test]
    fn a_one_element_set_is_written_as_its_atom() {
        for (v, want) in [
            (Value::set([7i64]), json!(7)),
            (
                Value::set([Atom::NamedUuid("p1".into())]),
                json!(["named-uuid", "p1"]),
            ),
            (Value::set(Vec::<i64>::new()), json!(["set", []])),
            (Value::set([1i64, 2]), json!(["set", [1, 2]])),
        ] {
            assert_eq!(v.to_json(), want);
            // The direct serializer writes the same bytes as the tree.
            assert_eq!(serde_json::to_string(&v).unwrap(), want.to_string());
        }
    }

    #[test]
    fn rejects_malformed() {
        assert!(Value::from_json(&json!(null)).is_err());
        assert!(Value::from_json(&json!(["uuid", "nope"])).is_err());
        assert!(Value::from_json(&json!(["map", [[1]]])).is_err());
    }
}

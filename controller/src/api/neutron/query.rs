//! List queries as Neutron takes them: attribute filters (repeated = OR), the tag filters
//! (`tags`, `tags-any`, `not-tags`, `not-tags-any`, comma-separated) of resources with
//! tags, `fields`, `sort_key`/`sort_dir`, `limit`/`marker`/`page_reverse` with
//! `<collection>_links`.
//!
//! Filtering and sorting run over the rendered JSON objects, so every attribute a client
//! can see is filterable and sortable with the same semantics.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::to_bool;
use crate::error::DomainError;

/// A parsed list query.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// (attribute, accepted values).
    pub filters: Vec<(String, Vec<String>)>,
    /// Attributes to return (empty = all).
    pub fields: Vec<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Id of the item the page starts after (or before, with `page_reverse`).
    pub marker: Option<String>,
    /// Page backwards from the marker.
    pub page_reverse: bool,
    /// (attribute, ascending).
    pub sorts: Vec<(String, bool)>,
    /// The tag filters.
    pub tags: TagFilters,
    passthrough: Vec<(String, String)>,
}

/// Neutron's tag filters, each the union of its (comma-separated, repeatable) values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TagFilters {
    /// `tags`: has every one.
    pub all: Vec<String>,
    /// `tags-any`: has at least one.
    pub any: Vec<String>,
    /// `not-tags`: has not every one.
    pub not_all: Vec<String>,
    /// `not-tags-any`: has none.
    pub not_any: Vec<String>,
}

impl TagFilters {
    /// The filter names.
    pub const NAMES: [&'static str; 4] = ["tags", "tags-any", "not-tags", "not-tags-any"];

    /// Whether no tag filter is given.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
            && self.any.is_empty()
            && self.not_all.is_empty()
            && self.not_any.is_empty()
    }

    fn add(&mut self, key: &str, value: &str) {
        let list = match key {
            "tags" => &mut self.all,
            "tags-any" => &mut self.any,
            "not-tags" => &mut self.not_all,
            _ => &mut self.not_any,
        };
        for t in value.split(',').filter(|t| !t.is_empty()) {
            if !list.iter().any(|x| x == t) {
                list.push(t.to_string());
            }
        }
    }

    /// Whether an item carrying `tags` passes every given filter (an empty filter passes).
    pub fn matches(&self, tags: &[&str]) -> bool {
        let has = |t: &String| tags.contains(&t.as_str());
        (self.all.is_empty() || self.all.iter().all(has))
            && (self.any.is_empty() || self.any.iter().any(has))
            && (self.not_all.is_empty() || !self.not_all.iter().all(has))
            && (self.not_any.is_empty() || !self.not_any.iter().any(has))
    }
}

impl ListQuery {
    /// Parse query pairs; `known` are the resource's attribute names (others are refused).
    pub fn parse(pairs: &[(String, String)], known: &[&str]) -> Result<Self, DomainError> {
        let mut q = ListQuery::default();
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "fields" => q.fields.push(v.clone()),
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        DomainError::invalid_input("limit", format!("'{v}' is not an integer"))
                    })?;
                    if n < 0 {
                        return Err(DomainError::invalid_input(
                            "limit",
                            format!("'{v}' should be non-negative"),
                        ));
                    }
                    // Neutron treats limit=0 as "no limit".
                    q.limit = if n == 0 { None } else { Some(n as usize) };
                }
                "marker" => q.marker = Some(v.clone()),
                "page_reverse" => {
                    q.page_reverse = to_bool(&Value::String(v.clone())).ok_or_else(|| {
                        DomainError::invalid_input(
                            "page_reverse",
                            format!("'{v}' is not a valid boolean value"),
                        )
                    })?
                }
                "sort_key" => {
                    if !known.contains(&v.as_str()) {
                        return Err(DomainError::invalid_input(
                            "sort_key",
                            format!("'{v}' is not an attribute of this resource"),
                        ));
                    }
                    sort_keys.push(v.clone());
                }
                "sort_dir" => match v.as_str() {
                    "asc" => sort_dirs.push(true),
                    "desc" => sort_dirs.push(false),
                    _ => {
                        return Err(DomainError::invalid_input(
                            "sort_dir",
                            format!("'{v}' is not asc or desc"),
                        ))
                    }
                },
                key if TagFilters::NAMES.contains(&key) && known.contains(&"tags") => {
                    q.tags.add(key, v);
                }
                key => {
                    if !known.contains(&key) {
                        return Err(DomainError::bad_request(format!(
                            "{key} is an invalid filter: not an attribute of this resource"
                        )));
                    }
                    match q.filters.iter_mut().find(|(fk, _)| fk == key) {
                        Some((_, vals)) => vals.push(v.clone()),
                        None => q.filters.push((key.to_string(), vec![v.clone()])),
                    }
                }
            }
            if k != "marker" && k != "page_reverse" {
                q.passthrough.push((k.clone(), v.clone()));
            }
        }
        if !sort_dirs.is_empty() && sort_dirs.len() != sort_keys.len() {
            return Err(DomainError::bad_request(
                "The number of sort_keys and sort_dirs must be same",
            ));
        }
        q.sorts = sort_keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, sort_dirs.get(i).copied().unwrap_or(true)))
            .collect();
        Ok(q)
    }

    /// Applies the query to `items` and wraps the page as Neutron does: `{collection: [...]}`,
    /// plus `{collection}_links` when paging.
    pub fn page_body(
        &self,
        items: Vec<Value>,
        base: &str,
        collection: &str,
    ) -> Result<Value, DomainError> {
        let (items, links) = self.apply(items, base, collection)?;
        let mut body = serde_json::Map::new();
        body.insert(collection.to_string(), Value::Array(items));
        if let Some(l) = links {
            body.insert(format!("{collection}_links"), Value::Array(l));
        }
        Ok(Value::Object(body))
    }

    /// One resource as `{resource: item}`, with `fields` applied.
    pub fn show_body(&self, item: Value, resource: &str) -> Value {
        let item = if self.fields.is_empty() {
            item
        } else {
            project_fields(item, &self.fields)
        };
        let mut body = serde_json::Map::new();
        body.insert(resource.to_string(), item);
        Value::Object(body)
    }

    /// Filter, sort, page and project `items`; returns the page and its links (if paging).
    pub fn apply(
        &self,
        items: Vec<Value>,
        base: &str,
        collection: &str,
    ) -> Result<(Vec<Value>, Option<Vec<Value>>), DomainError> {
        let mut items: Vec<Value> = items.into_iter().filter(|i| self.matches(i)).collect();
        let sorts = self.sorts.clone();
        items.sort_by(|a, b| {
            for (k, asc) in &sorts {
                let o = cmp_values(&a[k.as_str()], &b[k.as_str()]);
                if o != Ordering::Equal {
                    return if *asc { o } else { o.reverse() };
                }
            }
            cmp_values(&a["id"], &b["id"])
        });
        let mut links = None;
        if self.limit.is_some() || self.marker.is_some() {
            let pos = match &self.marker {
                Some(m) => Some(
                    items
                        .iter()
                        .position(|i| i["id"].as_str() == Some(m.as_str()))
                        .ok_or_else(|| {
                            DomainError::invalid_input(
                                "marker",
                                format!("'{m}' is not the id of an item in this list"),
                            )
                        })?,
                ),
                None => None,
            };
            let limit = self.limit.unwrap_or(usize::MAX);
            let (start, end, more_before, more_after) = if !self.page_reverse {
                let start = pos.map(|p| p + 1).unwrap_or(0);
                let end = start.saturating_add(limit).min(items.len());
                (start, end, start > 0, end < items.len())
            } else {
                let end = pos.unwrap_or(items.len());
                let start = end.saturating_sub(limit);
                (start, end, start > 0, end < items.len())
            };
            let page: Vec<Value> = items[start..end].to_vec();
            let mut l = Vec::new();
            if let (Some(first), Some(last)) = (page.first(), page.last()) {
                let href = |marker: &str, reverse: bool| {
                    let mut s = form_urlencoded::Serializer::new(String::new());
                    for (k, v) in &self.passthrough {
                        s.append_pair(k, v);
                    }
                    s.append_pair("marker", marker);
                    if reverse {
                        s.append_pair("page_reverse", "True");
                    }
                    format!("{base}/v2.0/{collection}?{}", s.finish())
                };
                let show_next = if self.page_reverse {
                    self.marker.is_some() || more_after
                } else {
                    more_after
                };
                let show_prev = if self.page_reverse {
                    more_before
                } else {
                    self.marker.is_some() || more_before
                };
                if show_next && more_after {
                    l.push(json!({"rel": "next", "href": href(last["id"].as_str().unwrap_or(""), false)}));
                }
                if show_prev && more_before {
                    l.push(json!({"rel": "previous", "href": href(first["id"].as_str().unwrap_or(""), true)}));
                }
            }
            items = page;
            links = Some(l);
        }
        if !self.fields.is_empty() {
            items = items
                .into_iter()
                .map(|i| project_fields(i, &self.fields))
                .collect();
        }
        Ok((items, links))
    }

    fn matches(&self, item: &Value) -> bool {
        if !self.tags.is_empty() {
            let tags: Vec<&str> = item["tags"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !self.tags.matches(&tags) {
                return false;
            }
        }
        self.filters.iter().all(|(k, vals)| {
            let v = &item[k.as_str()];
            vals.iter().any(|want| value_matches(v, want))
        })
    }
}

/// Keep only `fields` of an object (a `show` with `?fields=` too).
pub fn project_fields(item: Value, fields: &[String]) -> Value {
    match item {
        Value::Object(m) => {
            let kept: Map<String, Value> = m
                .into_iter()
                .filter(|(k, _)| fields.iter().any(|f| f == k))
                .collect();
            Value::Object(kept)
        }
        other => other,
    }
}

fn value_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => to_bool(&Value::String(want.to_string())) == Some(*b),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None" || want == "null",
        Value::Array(a) => {
            // `fixed_ips=ip_address=10.0.0.3` (object elements) or plain membership.
            if let Some((k, val)) = want.split_once('=') {
                if a.iter().any(|e| e.is_object()) {
                    return a.iter().any(|e| e[k].as_str() == Some(val));
                }
            }
            a.iter().any(|e| value_matches(e, want))
        }
        Value::Object(_) => false,
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn items() -> Vec<Value> {
        (0..5)
            .map(|i| json!({"id": format!("id{i}"), "name": format!("n{}", i % 2), "shared": i == 3, "fixed_ips": [{"ip_address": format!("10.0.0.{i}")}]}))
            .collect()
    }

    const KNOWN: &[&str] = &["id", "name", "shared", "fixed_ips"];

    #[test]
    fn filters_or_within_and_across() {
        let q = ListQuery::parse(&pairs("name=n0&name=n1&shared=True"), KNOWN).unwrap();
        let (r, links) = q.apply(items(), "http://h", "networks").unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["id"], "id3");
        assert!(links.is_none());
        let q = ListQuery::parse(&pairs("fixed_ips=ip_address%3D10.0.0.2"), KNOWN).unwrap();
        assert_eq!(q.apply(items(), "h", "ports").unwrap().0[0]["id"], "id2");
    }

    #[test]
    fn tag_filters_as_neutron() {
        let known = &["id", "tags"];
        let items: Vec<Value> = [vec![], vec!["red"], vec!["red", "blue"], vec!["blue"]]
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"id": format!("id{i}"), "tags": t}))
            .collect();
        let ids = |q: &str| -> Vec<String> {
            let q = ListQuery::parse(&pairs(q), known).unwrap();
            q.apply(items.clone(), "h", "networks")
                .unwrap()
                .0
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("tags=red,blue"), ["id2"]);
        assert_eq!(ids("tags=red&tags=blue"), ["id2"], "repeated = one list");
        assert_eq!(ids("tags-any=red,blue"), ["id1", "id2", "id3"]);
        assert_eq!(ids("not-tags=red,blue"), ["id0", "id1", "id3"]);
        assert_eq!(ids("not-tags-any=red"), ["id0", "id3"]);
        assert_eq!(ids("tags=red&not-tags-any=blue"), ["id1"]);
        assert_eq!(
            ids("tags="),
            ["id0", "id1", "id2", "id3"],
            "no tag: no filter"
        );
        // Not a filter of a resource without tags.
        assert!(ListQuery::parse(&pairs("tags-any=red"), &["id"]).is_err());
    }

    #[test]
    fn unknown_filter_and_sort_key_are_400() {
        assert!(ListQuery::parse(&pairs("colour=red"), KNOWN)
            .unwrap_err()
            .message
            .contains("colour"));
        assert!(ListQuery::parse(&pairs("sort_key=colour"), KNOWN).is_err());
        assert!(ListQuery::parse(&pairs("limit=x"), KNOWN)
            .unwrap_err()
            .message
            .contains("limit"));
    }

    #[test]
    fn pages_forward_and_back() {
        let q = ListQuery::parse(&pairs("limit=2&sort_key=id&sort_dir=desc"), KNOWN).unwrap();
        let (r, links) = q.apply(items(), "http://h", "networks").unwrap();
        assert_eq!(
            r.iter()
                .map(|i| i["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["id4", "id3"]
        );
        let links = links.unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0]["rel"], "next");
        assert!(links[0]["href"].as_str().unwrap().contains("marker=id3"));
        let q = ListQuery::parse(
            &pairs("limit=2&sort_key=id&sort_dir=desc&marker=id3"),
            KNOWN,
        )
        .unwrap();
        let (r, links) = q.apply(items(), "http://h", "networks").unwrap();
        assert_eq!(
            r.iter()
                .map(|i| i["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["id2", "id1"]
        );
        assert_eq!(links.unwrap().len(), 2);
        let q = ListQuery::parse(&pairs("limit=2&marker=id2&page_reverse=True"), KNOWN).unwrap();
        let (r, _) = q.apply(items(), "http://h", "networks").unwrap();
        assert_eq!(
            r.iter()
                .map(|i| i["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["id0", "id1"]
        );
    }

    #[test]
    fn fields_projection() {
        let q = ListQuery::parse(&pairs("fields=id&fields=name"), KNOWN).unwrap();
        let (r, _) = q.apply(items(), "h", "n").unwrap();
        assert_eq!(r[0].as_object().unwrap().len(), 2);
    }
}

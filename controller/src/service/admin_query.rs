//! The query string of Tricircle's admin lists (`/v1.0/jobs`, `/v1.0/routings`): `limit` and
//! `marker` for pages, every other key a filter among those the list supports, with
//! Tricircle's messages for what it refuses.

use std::collections::BTreeMap;

use crate::error::DomainError;

/// Tricircle's `pagination_max_limit` default: the page size without `limit`, and its cap.
pub const MAX_PAGE: usize = 2000;

/// A parsed admin list query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminQuery {
    /// Page size (1..=[`MAX_PAGE`]).
    pub limit: usize,
    /// Where the page starts (after this item), as given.
    pub marker: Option<String>,
    /// Filters by name.
    pub filters: BTreeMap<String, String>,
}

/// Reads `params`: `limit` (an integer; missing, zero, negative or above [`MAX_PAGE`] means
/// [`MAX_PAGE`], as Tricircle's `get_pagination_limit`), `marker`, and filters, each one of
/// `supported`. A filter repeated with the same value counts once (a next link followed with
/// the filters appended again); with another value it is refused.
pub fn parse(params: &[(String, String)], supported: &[&str]) -> Result<AdminQuery, DomainError> {
    let mut q = AdminQuery {
        limit: MAX_PAGE,
        marker: None,
        filters: BTreeMap::new(),
    };
    let mut unsupported: Vec<&str> = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "limit" => {
                let n: i64 = v.trim().parse().map_err(|_| {
                    DomainError::bad_request(format!(
                        "Limit should be an integer or a valid literal for int() rather than '{v}'"
                    ))
                })?;
                q.limit = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .unwrap_or(MAX_PAGE);
            }
            "marker" => q.marker = Some(v.clone()),
            k if supported.contains(&k) => match q.filters.get(k) {
                Some(old) if old != v => {
                    return Err(DomainError::bad_request(format!(
                        "Filter {k} is given twice with different values ('{old}', '{v}')"
                    )))
                }
                _ => {
                    q.filters.insert(k.to_string(), v.clone());
                }
            },
            k => {
                if !unsupported.contains(&k) {
                    unsupported.push(k);
                }
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(DomainError::bad_request(format!(
            "Unsupported filter type: {}",
            unsupported.join(", ")
        )));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits_filters_and_refusals() {
        let q = parse(
            &p(&[("limit", "2"), ("type", "x"), ("type", "x")]),
            &["type"],
        )
        .unwrap();
        assert_eq!(q.limit, 2);
        assert_eq!(q.filters.get("type").map(String::as_str), Some("x"));
        for l in ["0", "-3", "2001"] {
            assert_eq!(parse(&p(&[("limit", l)]), &[]).unwrap().limit, MAX_PAGE);
        }
        let e = parse(&p(&[("limit", "two")]), &[]).unwrap_err();
        assert!(e.message.contains("rather than 'two'"), "{}", e.message);
        let e = parse(&p(&[("colour", "red"), ("size", "1")]), &["type"]).unwrap_err();
        assert_eq!(e.message, "Unsupported filter type: colour, size");
        let e = parse(&p(&[("type", "a"), ("type", "b")]), &["type"]).unwrap_err();
        assert!(e.message.contains("twice"), "{}", e.message);
    }
}

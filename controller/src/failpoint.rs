//! Failpoints, for crash tests: named places in the code where a test can make the controller
//! die as if killed with `kill -9`, to prove that whatever it was doing there is resumed by
//! the next process on the same store.
//!
//! Armed by the environment variable [`ENV`], read once (at the first [`hit`]): a
//! comma-separated list of `name` or `name=N`, N being the hit that crashes (default 1), e.g.
//! `CROSSPOD_FAILPOINTS=realize:allocate=2,realize:publish`. When the variable is unset a hit
//! costs one atomic load.
//!
//! The crash is [`std::process::abort`]: no destructor runs, no transaction is committed or
//! rolled back by us, so the store sees exactly what a killed process leaves behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms failpoints.
pub const ENV: &str = "CROSSPOD_FAILPOINTS";

/// A malformed entry of [`ENV`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailpointError {
    /// An entry without a name (`=3`).
    #[error("failpoint entry {entry:?} has no name")]
    EmptyName {
        /// The entry as written.
        entry: String,
    },
    /// `name=N` where N is not a positive integer.
    #[error("failpoint entry {entry:?}: hit count {count:?} is not a positive integer")]
    BadCount {
        /// The entry as written.
        entry: String,
        /// The text after `=`.
        count: String,
    },
}

/// One armed failpoint: crash on hit number `crash_on` of `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The failpoint's name, as passed to [`hit`].
    pub name: String,
    /// Which hit crashes (1 = the first).
    pub crash_on: u64,
}

/// Parses the value of [`ENV`]. Blank entries (a trailing comma, spaces) are ignored.
pub fn parse(value: &str) -> Result<Vec<Spec>, FailpointError> {
    let mut out = Vec::new();
    for raw in value.split(',') {
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        let (name, crash_on) = match entry.split_once('=') {
            None => (entry, 1),
            Some((name, count)) => {
                let n = count
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| FailpointError::BadCount {
                        entry: entry.to_string(),
                        count: count.to_string(),
                    })?;
                (name.trim(), n)
            }
        };
        if name.is_empty() {
            return Err(FailpointError::EmptyName {
                entry: entry.to_string(),
            });
        }
        out.push(Spec {
            name: name.to_string(),
            crash_on,
        });
    }
    Ok(out)
}

struct Armed {
    spec: Spec,
    hits: AtomicU64,
}

static ARMED: OnceLock<Option<Vec<Armed>>> = OnceLock::new();

fn load() -> Option<Vec<Armed>> {
    let value = std::env::var(ENV).ok()?;
    match parse(&value) {
        Ok(specs) if specs.is_empty() => None,
        Ok(specs) => {
            tracing::warn!(failpoints = %value, "failpoints armed: this process will abort on purpose");
            Some(
                specs
                    .into_iter()
                    .map(|spec| Armed {
                        spec,
                        hits: AtomicU64::new(0),
                    })
                    .collect(),
            )
        }
        Err(e) => {
            // A misspelt spec must not silently turn a crash test into a no-op run: say so
            // loudly, and arm nothing (the test then sees no crash and fails).
            tracing::error!(error = %e, failpoints = %value, "ignoring malformed failpoints");
            None
        }
    }
}

/// Passes failpoint `name`: aborts the process when [`ENV`] arms it and this is the hit it
/// names; otherwise does nothing.
pub fn hit(name: &str) {
    let Some(armed) = ARMED.get_or_init(load) else {
        return;
    };
    for a in armed.iter().filter(|a| a.spec.name == name) {
        let n = a.hits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == a.spec.crash_on {
            tracing::error!(
                failpoint = name,
                hit = n,
                "failpoint reached: aborting the process"
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, crash_on: u64) -> Spec {
        Spec {
            name: name.into(),
            crash_on,
        }
    }

    #[test]
    fn a_bare_name_crashes_on_the_first_hit() {
        assert_eq!(
            parse("realize:publish"),
            Ok(vec![spec("realize:publish", 1)])
        );
    }

    #[test]
    fn a_count_names_the_hit_and_entries_are_comma_separated() {
        assert_eq!(
            parse("realize:allocate=2, realize:publish ,x=10"),
            Ok(vec![
                spec("realize:allocate", 2),
                spec("realize:publish", 1),
                spec("x", 10)
            ])
        );
    }

    #[test]
    fn blank_entries_are_ignored() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse(" , ,a,"), Ok(vec![spec("a", 1)]));
    }

    #[test]
    fn bad_counts_and_missing_names_are_errors_naming_the_entry() {
        for (value, count) in [("a=0", "0"), ("a=-1", "-1"), ("a=two", "two"), ("a=", "")] {
            assert_eq!(
                parse(value),
                Err(FailpointError::BadCount {
                    entry: value.into(),
                    count: count.into()
                }),
                "{value}"
            );
        }
        assert_eq!(
            parse("ok,=3"),
            Err(FailpointError::EmptyName { entry: "=3".into() })
        );
        let msg = parse("a=x").unwrap_err().to_string();
        assert!(msg.contains("\"a=x\"") && msg.contains("\"x\""), "{msg}");
    }

    #[test]
    fn an_unarmed_name_does_not_crash() {
        // The test process has no CROSSPOD_FAILPOINTS (or one that does not name this).
        hit("failpoint:test-never-armed");
        hit("failpoint:test-never-armed");
    }
}

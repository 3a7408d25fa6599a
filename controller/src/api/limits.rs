//! Caps on concurrent long-polls per caller, so one caller cannot park unbounded requests
//! (and their tasks and connections) on the controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{DomainError, ErrorClass};

/// Long-polls in progress by key (`desired:<node>`, `realized:<project>`).
#[derive(Default)]
pub struct LongPolls {
    active: Arc<Mutex<HashMap<String, usize>>>,
}

/// One long-poll's place; released on drop (answer, timeout or client gone).
pub struct Slot {
    active: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl LongPolls {
    /// Take a place under `key` if fewer than `cap` are taken, else 429 naming `what`.
    pub fn acquire(&self, key: String, cap: usize, what: &str) -> Result<Slot, DomainError> {
        let mut m = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.clone()).or_default();
        if *n >= cap {
            return Err(DomainError::new(
                ErrorClass::TooManyRequests,
                "TooManyRequests",
                format!("Too many concurrent long-polls for {what} (limit {cap}); retry later"),
            ));
        }
        *n += 1;
        Ok(Slot {
            active: self.active.clone(),
            key,
        })
    }

    /// Long-polls in progress under `key`.
    pub fn active(&self, key: &str) -> usize {
        let m = self.active.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_per_key_and_release_on_drop() {
        let p = LongPolls::default();
        let a = p.acquire("desired:n1".into(), 2, "node n1").unwrap();
        let _b = p.acquire("desired:n1".into(), 2, "node n1").unwrap();
        let e = p.acquire("desired:n1".into(), 2, "node n1").err().unwrap();
        assert_eq!(e.class, ErrorClass::TooManyRequests);
        assert!(p.acquire("desired:n2".into(), 2, "node n2").is_ok());
        drop(a);
        assert_eq!(p.active("desired:n1"), 1);
        assert!(p.acquire("desired:n1".into(), 2, "node n1").is_ok());
        assert_eq!(p.active("desired:n2"), 0);
    }
}

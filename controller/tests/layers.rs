//! The controller's layers, checked on its source: HTTP (`api`) above the domain
//! (`service`), above the realizer, jobs and store. Nothing below the HTTP layer imports it
//! or axum, and no two top-level modules import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its files name as `crate::X`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().to_string();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let set = out.entry(top.clone()).or_default();
            for part in text.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    set.insert(name);
                }
            }
            if text.contains("axum::") || text.contains("use axum") {
                set.insert("axum".into());
            }
        }
    }
    out
}

#[test]
fn nothing_below_http_imports_it() {
    let g = imports();
    for (m, deps) in &g {
        if m == "api" {
            continue;
        }
        assert!(
            !deps.contains("api") && !deps.contains("axum"),
            "{m} imports the HTTP layer: {deps:?}"
        );
    }
    for low in ["realize", "jobs", "intent", "store", "run"] {
        assert!(
            !g.get(low).is_some_and(|d| d.contains("service")),
            "{low} imports the domain layer"
        );
    }
}

#[test]
fn no_import_circle() {
    let g = imports();
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == n) {
            panic!("import circle: {:?} -> {n}", &path[i..]);
        }
        if done.contains(n) {
            return;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            visit(g, d, path, done);
        }
        path.pop();
        done.insert(n.to_string());
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        visit(&g, n, &mut Vec::new(), &mut done);
    }
    assert!(g.contains_key("service") && g.contains_key("api"), "{g:?}");
}

//! The code map's rules (ARCHITECTURE.md), checked on the sources rather than trusted: inside
//! each crate the top-level modules import one another without a cycle, so they stand in
//! layers and none imports a module above it; and the engine's dependency tree has no AWS
//! SDK, HTTP, TLS or CLI crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules are checked, by directory.
const CRATES: [&str; 6] = [
    "daemon",
    "daemon/engine",
    "daemon/adapters",
    "planner",
    "playbooks",
    "state",
];

/// A crate's top-level modules (a file or a directory under `src/`, test-only ones left out)
/// and the files of each.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let root = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(src.join(f)).unwrap_or_default())
        .collect::<String>();
    let test_only = |name: &str| root.contains(&format!("#[cfg(test)]\nmod {name};"));
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src/") {
        let path = entry.expect("entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if stem == "lib" || stem == "main" || stem == "bin" || test_only(&stem) {
            continue;
        }
        let files: &mut Vec<PathBuf> = found.entry(stem).or_default();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    found.retain(|_, files| !files.is_empty());
    found
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("module directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a file that is built outside tests; a `tests.rs` file is all test.
fn production_code(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    without_tests_and_comments(&std::fs::read_to_string(path).expect("source file"))
}

/// `text` with its comments dropped, and nothing from the first `#[cfg(test)]` on (the test
/// modules come last).
fn without_tests_and_comments(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names: `crate::a`, each of `crate::{a, b::c}`, and
/// `super::a` in a file whose parent is the crate root (`is_root_child`).
fn named_modules(code: &str, is_root_child: bool) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut prefixes = vec!["crate::"];
    if is_root_child {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            names.insert(ident(&group[i..]));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                names.insert(ident(rest));
            }
        }
    }
    names
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Module -> the modules it imports, for the crate in `dir`.
fn import_graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = dir.join("src");
    let modules = modules(&src);
    let mut graph = BTreeMap::new();
    for (module, files) in &modules {
        let imports: &mut BTreeSet<String> = graph.entry(module.clone()).or_default();
        for file in files {
            let parent = file.parent().expect("parent");
            let is_root_child = parent == src || file.file_name().is_some_and(|n| n == "mod.rs");
            let code = production_code(file);
            imports.extend(
                named_modules(&code, is_root_child)
                    .into_iter()
                    .filter(|m| m != module && modules.contains_key(m)),
            );
        }
    }
    graph
}

#[test]
fn every_crates_modules_stand_in_layers_without_an_import_cycle() {
    let root = whittle_tests::repo_root();
    let mut edges = 0;
    for dir in CRATES {
        let graph = import_graph(&root.join(dir));
        assert!(
            graph.len() > 1 || dir == "playbooks",
            "{dir}: modules found: {graph:?}"
        );
        edges += graph.values().map(BTreeSet::len).sum::<usize>();
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{dir}: its modules import one another in a cycle: {}; a module may import only modules below it (ARCHITECTURE.md)",
                cycle.join(" -> ")
            );
        }
    }
    // The engine alone has about a hundred: a scanner that found none would pass anything.
    assert!(edges > 100, "only {edges} imports found between modules");
}

#[test]
fn the_scanner_sees_grouped_imports_and_cycles() {
    let code = "use crate::{Engine, plan::{a, b}, trial};\nuse crate::mine::x;\nlet y = super::rotate::z; // crate::status\n";
    assert_eq!(
        named_modules(&without_tests_and_comments(code), true),
        ["Engine", "mine", "plan", "rotate", "trial"]
            .map(str::to_owned)
            .into()
    );
    assert!(!named_modules(code, false).contains("rotate"));
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(str::to_owned).to_vec())
    );
}

/// The packages `package` depends on, directly or not, as Cargo.lock records them (the
/// lock file does not say which are dev- or build-dependencies; the engine has no
/// dev-dependencies, and its build-dependencies are in the set too).
fn locked_dependencies(lock: &str, package: &str) -> BTreeSet<String> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in lock.split("[[package]]").skip(1) {
        let field = |name: &str| {
            entry.lines().find_map(|l| {
                l.strip_prefix(&format!("{name} = \""))
                    .and_then(|v| v.strip_suffix('"'))
            })
        };
        let Some(name) = field("name") else { continue };
        let list = entry
            .split("dependencies = [")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_default();
        let names = list
            .split(',')
            .filter_map(|d| d.trim().trim_matches('"').split(' ').next())
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        deps.entry(name.to_owned()).or_default().extend(names);
    }
    let mut seen = BTreeSet::new();
    let mut queue = vec![package.to_owned()];
    while let Some(next) = queue.pop() {
        for dep in deps.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                queue.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn the_engine_depends_on_no_aws_sdk_http_tls_or_cli_crate() {
    let root = whittle_tests::repo_root();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    let engine = locked_dependencies(&lock, "whittle-engine");
    assert!(
        engine.contains("whittle-planner") && engine.contains("tokio"),
        "{engine:?}"
    );
    let forbidden: Vec<&String> = engine
        .iter()
        .filter(|d| {
            d.starts_with("aws-")
                || ["hyper", "rustls", "clap", "axum", "reqwest"].contains(&d.as_str())
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "whittle-engine depends on {forbidden:?}: the engine reaches AWS, HTTPS and the command line only through its ports (daemon/adapters, daemon/)"
    );
    let adapters = locked_dependencies(&lock, "whittle-adapters");
    assert!(adapters.contains("aws-sdk-iam") && adapters.contains("hyper"));
}

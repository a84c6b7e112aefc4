//! Tests of the crate's layering, read from its source: handlers reach the application through
//! its use cases, never the store, and the modules have no import circle (issue 22).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, in folders too.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The web layer calls the application's use cases, never its store: every check of who may
/// see what, and every audit event, lives in a use case (issue 22).
#[test]
fn handlers_call_use_cases_never_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for path in rust_files(&src) {
        let text: String = std::fs::read_to_string(&path).unwrap().chars().filter(|c| !c.is_whitespace()).collect();
        // Spelt in pieces so that this test does not find itself.
        let store = "store";
        for needle in [format!(".{store}."), format!(".{store}("), format!("caldicott_{store}::Store")] {
            if text.contains(&needle) {
                found.push(format!("{}: {needle}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "the web layer reaches the store directly: {found:?}");
}

/// The crate root, in the module graph: it declares every top-level module.
const ROOT: &str = "crate";

/// A module's path as the graph names it (`staff::record`; the root is `crate`).
fn name(path: &[String]) -> String {
    if path.is_empty() {
        ROOT.to_owned()
    } else {
        path.join("::")
    }
}

/// The module a source file is (`src/staff/mod.rs` is `staff`, `src/staff/record.rs` is
/// `staff::record`, `src/lib.rs` is the root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source without comments and without inline `#[cfg(test)]` modules (a test's `super::*`
/// names its own file, and test code is not part of the built crate's graph).
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            let mut depth = 0i32;
            let mut opened = false;
            for next in lines.by_ref() {
                depth += next.matches('{').count() as i32 - next.matches('}').count() as i32;
                opened |= next.contains('{');
                if (opened && depth <= 0) || (!opened && next.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The paths `text` names after each `prefix` (`crate::a::b`, and each branch of
/// `crate::{a::b, c}`), as lists of segments.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    fn segments(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = s;
        loop {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            out.push(rest[..end].to_owned());
            match rest[end..].strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        out
    }
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `my_crate::`, or the second `super::` of `super::super::`: not a path's start
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(segments(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(segments(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(segments(rest));
        }
    }
    found.retain(|p| !p.is_empty());
    found
}

/// The module graph of a crate's sources (module path and code): an edge from each module to
/// every module it names by a `crate::`, `$crate::` or `super::` path (the longest prefix of the
/// path that is a module; a path whose first segment is no module names the root), and from a
/// module to each module it declares (`mod x;`). Modules declared `#[cfg(test)]` are left out.
fn module_graph(files: &[(Vec<String>, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let test_only: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|(m, text)| {
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            lines
                .windows(2)
                .filter(|w| w[0] == "#[cfg(test)]")
                .filter_map(|w| w[1].strip_prefix("mod ").and_then(|r| r.strip_suffix(';')))
                .map(|child| m.iter().cloned().chain([child.trim().to_owned()]).collect())
                .collect::<Vec<Vec<String>>>()
        })
        .collect();
    let modules: BTreeSet<Vec<String>> =
        files.iter().map(|(m, _)| m.clone()).filter(|m| !test_only.contains(m)).collect();
    let resolve = |path: &[String]| -> Vec<String> {
        (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap_or_default()
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in files.iter().filter(|(m, _)| modules.contains(m)) {
        let code = code_of(text);
        let mut named: Vec<Vec<String>> = paths_after(&code, "crate::");
        for p in paths_after(&code, "super::") {
            let up = 1 + p.iter().take_while(|s| *s == "super").count();
            let base = &m[..m.len().saturating_sub(up)];
            named.push(base.iter().cloned().chain(p.into_iter().skip(up - 1)).collect());
        }
        for line in code.lines().map(str::trim) {
            let decl = line
                .strip_prefix("pub(crate) mod ")
                .or_else(|| line.strip_prefix("pub mod "))
                .or_else(|| line.strip_prefix("mod "));
            if let Some(child) = decl.and_then(|d| d.strip_suffix(';')) {
                named.push(m.iter().cloned().chain([child.trim().to_owned()]).collect());
            }
        }
        let edges = graph.entry(name(m)).or_default();
        for target in named.iter().map(|p| resolve(p)).filter(|t| t != m) {
            edges.insert(name(&target));
        }
    }
    graph
}

/// A circle in the graph, as the modules around it (the first again at the end), if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, done, path) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|start| visit(start, graph, &mut done, &mut Vec::new()))
}

/// No import circle among the web crate's modules (issue 22): each file is a module, and no
/// module names (through any chain of others) a module that names it back. The HTML kernel and
/// the modules below it name no feature, and a feature names no other that names it back; the
/// crate root assembles the router and is named by none.
#[test]
fn the_modules_have_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<(Vec<String>, String)> =
        rust_files(&src).iter().map(|f| (module_of(&src, f), std::fs::read_to_string(f).unwrap())).collect();
    let graph = module_graph(&files);
    assert!(graph.len() > 20, "the graph has too few modules to be the crate's: {graph:?}");
    assert!(graph["staff::record"].contains("kernel"), "the graph misses the record page's use of the kernel");
    if let Some(circle) = find_circle(&graph) {
        panic!("the web crate's modules import each other in a circle: {}", circle.join(" -> "));
    }
}

/// The check above finds a circle when there is one, through `super::` and `mod` too.
#[test]
fn an_import_circle_is_found() {
    let file = |m: &str, text: &str| (m.split("::").map(str::to_owned).collect::<Vec<_>>(), text.to_owned());
    let clean = [
        (Vec::new(), "mod a;\nmod b;\n#[cfg(test)]\nmod checks;\n".to_owned()),
        file("a", "//! `crate::b` only in a comment\nmod inner;\n"),
        file("a::inner", "use super::super::b::thing;\n"),
        file("b", "pub fn thing() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
        file("checks", "use crate::a::inner;\n"),
    ];
    assert_eq!(find_circle(&module_graph(&clean)), None);
    let mut circular = clean.to_vec();
    circular[3] = file("b", "use crate::{a::inner::x, c};\n");
    assert_eq!(
        find_circle(&module_graph(&circular)),
        Some(vec!["a::inner".to_owned(), "b".to_owned(), "a::inner".to_owned()])
    );
}

//! The layout rules of `src/`, `python/src/` and `web/src/`, checked on the source text:
//! modules form layers (no module imports another that imports it back, directly or through
//! others), the library's layers are those docs/ARCHITECTURE.md's table lists, the Python
//! module's and the page's `lib.rs` sit on top (no module of theirs imports it), no file is
//! over 700 lines and no function over 100. A file is a node; `use` items and inline paths
//! starting with `crate::`, `super::` or `self::` are its edges, resolved to the deepest
//! module they name. The library, the `qkv` binary, the Python module and the page are
//! separate crates, checked separately.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;

/// The most lines a function may span, its signature to its closing brace.
const MAX_FN_LINES: usize = 100;

/// Source files of one crate: module path ("" for the root) -> file.
fn modules(root_file: &Path) -> BTreeMap<String, PathBuf> {
    let dir = root_file.parent().unwrap();
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // The binary's directory is another crate.
                if path.file_name().unwrap() != "bin" {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let last = parts.last().unwrap().clone();
            if last == "mod" || path == root_file {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The text with comments and string literals blanked out.
fn code_only(text: &str) -> String {
    let (mut out, mut chars) = (String::new(), text.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '"' && !escaped {
                        break;
                    }
                    escaped = c == '\\' && !escaped;
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' or '{' must not open a string or a group.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\\") || rest.chars().nth(1) == Some('\'') {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path a file names that starts with crate::, super:: or self::, `use` groups
/// expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` items, braces expanded.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = &rest[..i];
        rest = &rest[i + 4..];
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        expand("", &rest[..end].replace(char::is_whitespace, ""), &mut out);
        rest = &rest[end..];
    }
    // Inline paths.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                tail.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out.retain(|p| {
        matches!(
            p.first().map(String::as_str),
            Some("crate" | "super" | "self")
        )
    });
    out
}

fn expand(prefix: &str, item: &str, out: &mut Vec<Vec<String>>) {
    match item.find('{') {
        None => {
            let full = format!("{prefix}{item}");
            out.push(
                full.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
        Some(open) => {
            let head = &item[..open];
            let inner = &item[open + 1..item.rfind('}').unwrap_or(item.len())];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&format!("{prefix}{head}"), &inner[start..], out);
            }
        }
    }
}

/// The module a path from module `from` names: its deepest prefix that is a module (the
/// crate root for an item the root re-exports).
fn resolve(from: &str, path: &[String], mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut base: Vec<String> = from
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut rest = path;
    match path[0].as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = base.join("::");
    for seg in rest {
        base.push(seg.clone());
        let name = base.join("::");
        if mods.contains_key(&name) {
            best = name;
        }
    }
    Some(best)
}

/// `code` without its inline test modules (`mod tests { .. }`), whose `super` is the file
/// itself and whose imports are the tests', not the module's.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("mod tests {") {
        let open = at + "mod tests ".len();
        let mut depth = 0;
        let mut end = out.len();
        for (j, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let lines = out[at..end].matches('\n').count();
        out.replace_range(at..end, &"\n".repeat(lines));
    }
    out
}

/// Every function of `code` (comments and strings blanked) longer than [`MAX_FN_LINES`], as
/// (name, first line, lines).
fn long_functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("fn ") {
        let at = from + i;
        from = at + 3;
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body opens at the first `{` outside brackets; a `;` first means no body.
        let (mut depth, mut open) = (0i32, None);
        for (j, c) in code[at..].char_indices() {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    open = Some(at + j);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0i32;
        let mut close = code.len();
        for (j, c) in code[open..].char_indices() {
            match c {
                '{' => braces += 1,
                '}' => {
                    braces -= 1;
                    if braces == 0 {
                        close = open + j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let first = code[..at].matches('\n').count() + 1;
        let lines = code[at..close].matches('\n').count() + 1;
        if lines > MAX_FN_LINES {
            out.push((name, first, lines));
        }
    }
    out
}

/// A crate's modules and, for each, the modules it imports; with the problems found on the
/// way (files and functions too long).
type Graph = (
    BTreeMap<String, PathBuf>,
    BTreeMap<String, BTreeSet<String>>,
    Vec<String>,
);

fn graph(root_file: &Path) -> Graph {
    let mods = modules(root_file);
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{} has {lines} lines (at most {MAX_LINES})",
                file.display()
            ));
        }
        let code = code_only(&text);
        for (f, first, lines) in long_functions(&code) {
            problems.push(format!(
                "{}:{first}: fn {f} has {lines} lines (at most {MAX_FN_LINES})",
                file.display()
            ));
        }
        for p in paths(&without_test_modules(&code)) {
            if let Some(to) = resolve(name, &p, &mods) {
                if &to != name {
                    edges.entry(name.clone()).or_default().insert(to);
                }
            }
        }
    }
    (mods, edges, problems)
}

fn check_crate(root_file: &Path) -> Vec<String> {
    let (mods, edges, mut problems) = graph(root_file);
    // A module that reaches itself through its imports is in a cycle.
    for start in mods.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, trail)) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if next == start {
                    let mut cycle = trail.clone();
                    cycle.push(next.clone());
                    let show: Vec<&str> = cycle
                        .iter()
                        .map(|s| if s.is_empty() { "(root)" } else { s.as_str() })
                        .collect();
                    problems.push(format!("import cycle: {}", show.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// The root files of the crates checked: the library, the `qkv` binary, the Python module
/// and the page.
fn crate_roots() -> [PathBuf; 4] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("src/lib.rs"),
        root.join("src/bin/qkv/main.rs"),
        root.join("python/src/lib.rs"),
        root.join("web/src/lib.rs"),
    ]
}

#[test]
fn modules_form_layers_and_files_stay_short() {
    let mut problems = Vec::new();
    for root in crate_roots() {
        problems.extend(check_crate(&root));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The modules of the crate at `root_file` that import its root (the root declares every
/// module, so each would import what imports it).
fn imports_of_the_root(root_file: &Path) -> Vec<String> {
    let (_, edges, _) = graph(root_file);
    edges
        .iter()
        .filter(|(from, tos)| !from.is_empty() && tos.contains(""))
        .map(|(from, _)| format!("{}: {from} imports the crate root", root_file.display()))
        .collect()
}

#[test]
fn the_python_module_and_the_page_keep_their_lib_rs_on_top() {
    // Their `lib.rs` declares the modules and registers what they export: a helper it held
    // would be imported back by the modules it declares.
    let [_, _, python, web] = crate_roots();
    let mut problems = imports_of_the_root(&python);
    problems.extend(imports_of_the_root(&web));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    // The check sees an import of the root, as the Python module's helpers once were.
    let code = code_only("use crate::{py_err, context};\nfn f() { crate::filter(); }");
    let mods: BTreeMap<String, PathBuf> = ["", "bench"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    for p in paths(&code) {
        assert_eq!(resolve("bench", &p, &mods).as_deref(), Some(""), "{p:?}");
    }
}

/// docs/ARCHITECTURE.md's table of the library's modules, from the ground up: each module
/// named in a row's first cell (in backquotes) with the row's index.
fn layer_table() -> BTreeMap<String, usize> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .unwrap();
    let table = doc
        .split("## The modules, from the ground up")
        .nth(1)
        .expect("the doc has its table of modules");
    let mut rows = BTreeMap::new();
    let body = table.lines().filter(|l| l.starts_with("| `"));
    for (i, line) in body.enumerate() {
        let cell = line.split('|').nth(1).unwrap();
        for name in cell.split('`').skip(1).step_by(2) {
            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                rows.insert(name.to_string(), i);
            }
        }
    }
    rows
}

#[test]
fn the_layer_table_in_the_doc_matches_the_imports() {
    // Each row uses only rows above it (or its own): a module's imports of another top-level
    // module of the library must point up the table, and none may import the crate root.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (mods, edges, _) = graph(&src.join("lib.rs"));
    let rows = layer_table();
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut problems = Vec::new();
    for m in mods.keys().map(|m| top(m)).filter(|m| !m.is_empty()) {
        if !rows.contains_key(&m) {
            problems.push(format!("module {m} is not in the doc's table"));
        }
    }
    for (from, tos) in &edges {
        for to in tos {
            let (a, b) = (top(from), top(to));
            if from.is_empty() || a == b {
                continue;
            }
            if b.is_empty() {
                problems.push(format!("{from} imports the crate root"));
                continue;
            }
            if let (Some(ra), Some(rb)) = (rows.get(&a), rows.get(&b)) {
                if rb > ra {
                    problems.push(format!(
                        "{from} (row {ra} of the table) imports {to} (row {rb}, below it)"
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(rows.len() > 15, "{rows:?}");
}

#[test]
fn the_function_check_measures_from_fn_to_its_closing_brace() {
    let mut code = String::from("fn short() { let a = { 1 }; }\nfn long(x: [u8; 2]) {\n");
    code.push_str(&"    f();\n".repeat(MAX_FN_LINES));
    code.push_str("}\nfn declared();\n");
    let long = long_functions(&code);
    assert_eq!(long, vec![("long".to_string(), 2, MAX_FN_LINES + 2)]);
}

#[test]
fn the_check_sees_a_cycle_through_a_use_group_and_ignores_comments() {
    let code = code_only(
        "use crate::{a::X, b::{c::Y, Z}};\n// use crate::d;\nlet s = \"crate::e\"; super::f::g();",
    );
    let found = paths(&code);
    let names: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert!(names.contains(&"crate::a::X".to_string()), "{names:?}");
    assert!(names.contains(&"crate::b::c::Y".to_string()), "{names:?}");
    assert!(names.contains(&"super::f::g".to_string()), "{names:?}");
    assert!(!names
        .iter()
        .any(|n| n.contains("crate::d") || n.contains("crate::e")));
    let mods: BTreeMap<String, PathBuf> = ["", "a", "b", "b::c"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    let path: Vec<String> = ["crate", "b", "c", "Y"].map(String::from).to_vec();
    assert_eq!(resolve("a", &path, &mods).as_deref(), Some("b::c"));
}

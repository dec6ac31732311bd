//! The layer rule of the README's architecture: every module reference in `src/`
//! (`use` lines and inline paths like `crate::x::y` alike) points to the same
//! top-level module or to a lower layer, siblings among the adapters never
//! reference each other, and no top-level modules reference each other in a circle.
//!
//! The check reads the source text: comments, strings and character literals are
//! blanked first, then every path that starts with `crate`, `$crate`, `super` (resolved
//! through the file's module path and its inline `mod x { … }` blocks) or, in
//! `main.rs`, `replytime` is reduced to the top-level module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers from the bottom up: (name, top-level modules, whether modules of the
/// layer may reference each other). A module may reference its own layer (when
/// allowed) and every layer below it, never one above.
const LAYERS: &[(&str, &[&str], bool)] = &[
    // The WAL position: the one word of the vocabulary telemetry reports too.
    ("lsn", &["lsn"], false),
    // Leaves every layer may use: they import nothing above `lsn`.
    ("leaves", &["telemetry", "fault"], false),
    // The Postgres client (URL grammar, TLS, connect) that the settings check URLs
    // with and the Postgres-facing adapters connect through.
    ("pgconn", &["pgconn"], false),
    // The vocabulary: typed row changes, each source table's columns, the timestamp
    // reader, the derived row, settings, shards. Its modules may use each other
    // (without circles).
    (
        "vocabulary",
        &[
            "change",
            "row",
            "tables",
            "timestamp",
            "config",
            "error",
            "shard",
        ],
        true,
    ),
    // IO adapters and the traffic generator: siblings that never import each other.
    ("adapters", &["source", "store", "sink", "workload"], false),
    // The batch oracle (test tooling): above the traffic generator its tests drive,
    // below the engine it must share no derivation code with (and see `TEST_ONLY`).
    ("oracle", &["oracle"], false),
    ("engine", &["engine"], false),
    ("pipeline", &["pipeline"], false),
    ("commands", &["commands"], false),
    // Flags, tracing and the dispatch to a command; `""` is the library root (`lib.rs`).
    ("cli", &["cli", ""], false),
    // The binary's `main`.
    ("main", &["main"], false),
];

/// Modules only tests, benches and the modules themselves may reference: the
/// product never depends on its own test tooling.
const TEST_ONLY: &[&str] = &["oracle"];

/// One reference that breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
    why: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} -> {}: {}",
            self.file, self.line, self.from, self.to, self.why
        )
    }
}

/// A reference from one top-level module to another.
#[derive(Debug, Clone)]
struct Reference {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn layer_of(module: &str) -> Option<(usize, &'static str, bool)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules, _))| modules.contains(&module))
        .map(|(rank, (name, _, siblings))| (rank, *name, *siblings))
}

/// The module path of a file under `src/`: `src/pipeline/streaming.rs` is
/// `["pipeline", "streaming"]`, `src/pipeline/mod.rs` is `["pipeline"]`, `lib.rs`
/// is `[]` and `main.rs` is `["main"]`.
fn module_path(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap_or(file);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source with comments, string literals and character literals replaced by
/// spaces (newlines kept, so line numbers stay right).
fn blank_non_code(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !prev_is_ident(&chars, i)
            && raw_string_hashes(&chars, i + usize::from(c == 'b') + 1).is_some()
        {
            let start = i + usize::from(c == 'b') + 1;
            let hashes = raw_string_hashes(&chars, start).unwrap_or(0);
            let mut j = start + hashes + 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &chars[i..j.min(chars.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{..}'.
            out.push_str("  ");
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// At `start` (just after `r`): the number of `#` before an opening `"`, when it is
/// a raw string.
fn raw_string_hashes(chars: &[char], start: usize) -> Option<usize> {
    let hashes = chars[start.min(chars.len())..]
        .iter()
        .take_while(|&&c| c == '#')
        .count();
    (chars.get(start + hashes) == Some(&'"')).then_some(hashes)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other(char),
}

fn tokenize(code: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push((Token::Ident(word.trim_start_matches('$').to_string()), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            tokens.push((
                match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    ',' => Token::Comma,
                    other => Token::Other(other),
                },
                line,
            ));
            i += 1;
        }
    }
    tokens
}

/// The top-level modules named by the path starting at `tokens[i]` (an identifier),
/// with the number of tokens the path spans. Empty when the path stays inside the
/// file's own top-level module or names something outside the crate.
fn path_targets(
    tokens: &[(Token, usize)],
    i: usize,
    here: &[String],
    binary: bool,
) -> (Vec<String>, usize) {
    let ident = |k: usize| match tokens.get(k) {
        Some((Token::Ident(word), _)) => Some(word.as_str()),
        _ => None,
    };
    let sep = |k: usize| matches!(tokens.get(k), Some((Token::PathSep, _)));
    // Where the path is resolved from: the crate root, or `here` minus supers.
    let mut k = i;
    let mut base: Vec<String> = match ident(k) {
        Some("crate") if !binary => Vec::new(),
        Some("replytime") if binary => Vec::new(),
        Some("super") => {
            let mut base = here.to_vec();
            while ident(k) == Some("super") && sep(k + 1) {
                base.pop();
                k += 2;
            }
            // Back on the last `super`, as `crate` would be.
            k -= 2;
            base
        }
        _ => return (Vec::new(), 1),
    };
    if !sep(k + 1) {
        return (Vec::new(), 1);
    }
    k += 2;
    // Walk on while the path is still at or above the root's children.
    while base.is_empty() {
        match tokens.get(k) {
            Some((Token::Ident(word), _)) if word == "self" => return (Vec::new(), k - i + 1),
            Some((Token::Ident(word), _)) => {
                base.push(word.clone());
            }
            Some((Token::Open, _)) => {
                // A group: `crate::{a::b, c}` names every first segment in it.
                let mut targets = Vec::new();
                let mut depth = 0;
                let mut expect_name = true;
                let mut j = k;
                while let Some((token, _)) = tokens.get(j) {
                    match token {
                        Token::Open => {
                            depth += 1;
                            expect_name = depth == 1;
                        }
                        Token::Close => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Token::Comma if depth == 1 => expect_name = true,
                        Token::Ident(word) if expect_name => {
                            if word != "self" {
                                targets.push(word.clone());
                            }
                            expect_name = false;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                return (targets, j - i + 1);
            }
            _ => return (Vec::new(), k - i + 1),
        }
    }
    let target = base[0].clone();
    if here.first() == Some(&target) && !binary {
        return (Vec::new(), k - i + 1);
    }
    (vec![target], k - i + 1)
}

/// Every reference from `file` (a path like `src/store/outbox.rs`) to another
/// top-level module.
fn references(file: &str, source: &str) -> Vec<Reference> {
    let file_module = module_path(file);
    let binary = file == "src/main.rs";
    let from = if binary {
        "main".to_string()
    } else {
        file_module.first().cloned().unwrap_or_default()
    };
    let tokens = tokenize(&blank_non_code(source));
    let mut refs = Vec::new();
    // Inline modules: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Open => {
                depth += 1;
                i += 1;
            }
            Token::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some((Token::Ident(name), _)), Some((Token::Open, _))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
                i += 1;
            }
            Token::Ident(_) => {
                let here: Vec<String> = file_module
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(name, _)| name.clone()))
                    .collect();
                let preceded_by_sep = i > 0 && tokens[i - 1].0 == Token::PathSep;
                let (targets, span) = if preceded_by_sep {
                    (Vec::new(), 1)
                } else {
                    path_targets(&tokens, i, &here, binary)
                };
                for to in targets {
                    refs.push(Reference {
                        file: file.to_string(),
                        line: tokens[i].1,
                        from: from.clone(),
                        to,
                    });
                }
                // Skip identifiers of the path, but not its braces (depth counting).
                let mut skipped = 0;
                while skipped < span && i < tokens.len() {
                    if matches!(tokens[i].0, Token::Open | Token::Close) {
                        break;
                    }
                    i += 1;
                    skipped += 1;
                }
                if skipped == 0 {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    refs
}

/// Checks `files` (path under the crate root, source text) against the layers.
fn check(files: &[(String, String)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut edges: BTreeMap<(String, String), Reference> = BTreeMap::new();
    for (file, source) in files {
        for r in references(file, source) {
            if r.from == r.to {
                continue;
            }
            let violation = |why: String| Violation {
                file: r.file.clone(),
                line: r.line,
                from: r.from.clone(),
                to: r.to.clone(),
                why,
            };
            if TEST_ONLY.contains(&r.to.as_str()) {
                violations.push(violation(format!(
                    "`{}` is test tooling: only tests/ and benches/ use it",
                    r.to
                )));
            }
            match (layer_of(&r.from), layer_of(&r.to)) {
                (None, _) => violations.push(violation(format!(
                    "`{}` is in no layer: add it to the layer list",
                    r.from
                ))),
                (_, None) => violations.push(violation(format!(
                    "`{}` is in no layer: add it to the layer list",
                    r.to
                ))),
                (Some((from_rank, from_layer, _)), Some((to_rank, to_layer, siblings))) => {
                    if to_rank > from_rank {
                        violations.push(violation(format!(
                            "upward: {from_layer} may not reference {to_layer}, a higher layer"
                        )));
                    } else if to_rank == from_rank && !siblings {
                        violations.push(violation(format!(
                            "siblings: modules of the {from_layer} layer never reference each other"
                        )));
                    }
                }
            }
            edges.entry((r.from.clone(), r.to.clone())).or_insert(r);
        }
    }
    violations.extend(circles(&edges));
    violations
}

/// One violation per circle among top-level modules, at the reference that closes it.
fn circles(edges: &BTreeMap<(String, String), Reference>) -> Vec<Violation> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
    }
    let mut found = Vec::new();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for &start in graph.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        let mut on_path: Vec<&str> = vec![start];
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        while let Some((node, next)) = stack.pop() {
            let children = graph.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if next < children.len() {
                stack.push((node, next + 1));
                let child = children[next];
                if child == start {
                    let mut circle: Vec<String> = on_path.iter().map(|m| m.to_string()).collect();
                    let mut key = circle.clone();
                    key.sort();
                    if reported.insert(key) {
                        circle.push(start.to_string());
                        let closing = &edges[&(node.to_string(), start.to_string())];
                        found.push(Violation {
                            file: closing.file.clone(),
                            line: closing.line,
                            from: node.to_string(),
                            to: start.to_string(),
                            why: format!("import circle {}", circle.join(" -> ")),
                        });
                    }
                } else if seen.insert(child) {
                    stack.push((child, 0));
                    on_path.push(child);
                }
            } else {
                on_path.pop();
            }
        }
    }
    found
}

fn read_tree(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            files.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn every_module_reference_points_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    read_tree(root, &root.join("src"), &mut files);
    assert!(files.len() > 50, "read only {} files", files.len());
    let references: usize = files.iter().map(|(f, s)| references(f, s).len()).sum();
    assert!(references > 100, "found only {references} references");
    let violations = check(&files);
    let report: Vec<String> = violations.iter().map(Violation::to_string).collect();
    assert!(
        violations.is_empty(),
        "{} references break the layers:\n{}",
        violations.len(),
        report.join("\n")
    );
}

fn one(file: &str, source: &str) -> Vec<Violation> {
    check(&[(file.to_string(), source.to_string())])
}

#[test]
fn self_test_catches_an_inline_path_upward() {
    let found = one(
        "src/store/outbox.rs",
        "use crate::lsn::Lsn;\nfn f() {\n    let e = crate::engine::Engine::new();\n}\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].line, found[0].from.as_str(), found[0].to.as_str()),
        (3, "store", "engine")
    );
    assert!(
        found[0]
            .to_string()
            .starts_with("src/store/outbox.rs:3: store -> engine: upward")
    );
}

#[test]
fn self_test_catches_groups_siblings_and_supers() {
    let found = one(
        "src/sink/mod.rs",
        "use crate::{lsn::Lsn, source::{decode::X, Y}, row};\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].why.starts_with("siblings"), "{found:?}");
    assert_eq!(found[0].to, "source");

    let found = one(
        "src/pipeline/streaming.rs",
        "mod tests {\n    use super::super::Context;\n    use super::super::super::commands::x;\n}\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].to.as_str()), (3, "commands"));
}

#[test]
fn self_test_catches_a_circle_and_unknown_modules() {
    let files = [
        (
            "src/change.rs".to_string(),
            "use crate::row::X;\n".to_string(),
        ),
        (
            "src/row.rs".to_string(),
            "fn f() -> crate::change::Y { todo!() }\n".to_string(),
        ),
    ];
    let found = check(&files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].why.contains("import circle"), "{found:?}");

    let found = one("src/gadget.rs", "use crate::engine::Engine;\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].why.contains("in no layer"));

    let found = one(
        "src/pipeline/mod.rs",
        "fn f() { crate::oracle::derive(); }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].why.contains("test tooling"));
}

#[test]
fn self_test_ignores_comments_strings_and_own_module() {
    let source = r##"
//! See `crate::engine::Engine` for who calls this.
/* crate::pipeline::run */
const A: &str = "crate::engine::x";
const B: &str = r#"crate::commands::y"#;
const C: char = '"';
fn f<'a>(x: &'a str) -> crate::store::Cf { crate::store::Cf::Anchors }
use super::txn::StoreTxn;
"##;
    assert_eq!(one("src/store/outbox.rs", source), Vec::new());
    assert_eq!(
        one(
            "src/main.rs",
            "use replytime::cli::Cli;\nfn main() { replytime::commands::x(); }\n"
        ),
        Vec::new()
    );
}

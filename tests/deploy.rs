//! The `deploy/` artifacts checked against the code they describe (SPEC 6): the
//! alert rules and the dashboard query only metrics and labels that replytime
//! exports, Prometheus' own `promtool` accepts the rules, the dashboard queries and
//! the exposition, the key alerts fire when they should and stay quiet when they
//! should not, and the example configuration loads.
//!
//! ```text
//!  METRICS.render() ──▶ exported series + labels ◀── names in alerts.yml, replytime.json
//!        │                                                        │
//!        └──▶ promtool check metrics        promtool check rules ◀┘  promtool test rules
//! ```
//!
//! promtool (Debian package `prometheus`) is required, not optional: without it
//! these tests fail and say to run `scripts/install-deps.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use replytime::change::Table;
use replytime::config::{CONFIG_ENV, KEYS, Overrides, Settings};
use replytime::pipeline::shutdown::SHUTDOWN_BUDGET;
use replytime::telemetry::metrics::METRICS;

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DASHBOARD: &str = "deploy/grafana/replytime.json";
const SYSTEMD_CONFIG: &str = "deploy/systemd/replytime.toml";
const SYSTEMD_UNIT: &str = "deploy/systemd/replytime.service";
const MANIFESTS: &[&str] = &[
    "deploy/kubernetes/statefulset.yaml",
    "deploy/kubernetes/maintenance-job.yaml",
    "deploy/kubernetes/sidecar-deployment.yaml",
    "deploy/kubernetes/sharded-statefulset.yaml",
    "deploy/systemd/replytime.service",
    "deploy/Dockerfile",
];

/// Labels Prometheus adds at scrape time, and the bucket label of histograms.
const SCRAPE_LABELS: &[&str] = &["instance", "job"];

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

/// `$PROMTOOL`, else `promtool` on the PATH or in /usr/bin; else a failure (never a
/// skip) that says how to install it.
fn promtool() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("PROMTOOL") {
        Some(path) => vec![PathBuf::from(path)],
        None => std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join("promtool"))
            .collect(),
    };
    candidates
        .into_iter()
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found (Debian package `prometheus`): run scripts/install-deps.sh \
                 (or point PROMTOOL at it)"
            )
        })
}

/// Runs promtool with `args`, feeding `stdin`; fails the test with its output.
fn run_promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut pipe = child.stdin.take().expect("promtool stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write to promtool");
    }
    drop(pipe);
    let output = child.wait_with_output().expect("wait for promtool");
    assert!(
        output.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The exposition with every labelled family touched: a vector without children is
/// not rendered at all. The label values are the ones the daemon uses.
fn rendered_metrics() -> String {
    let m = &*METRICS;
    m.set_wal_status("reserved");
    for kind in ["received", "applied", "durable", "confirmed", "sink"] {
        m.lsn.with_label_values(&[kind]);
    }
    for table in Table::ALL {
        for operation in ["insert", "update", "delete", "truncate"] {
            m.changes.with_label_values(&[table.label(), operation]);
        }
    }
    for result in ["upserted", "deleted", "unchanged"] {
        m.sink_rows_written.with_label_values(&[result]);
    }
    for kind in ["source", "sink"] {
        m.errors.with_label_values(&[kind]);
    }
    for responder in ["setter", "ai"] {
        m.response_seconds.with_label_values(&["sms", responder]);
    }
    // The memory kinds as a real state directory reports them.
    let dir = tempfile::tempdir().unwrap();
    let store = replytime::store::Store::open(dir.path(), &Default::default()).unwrap();
    for (kind, _) in store.memory_usage() {
        m.state_memory_bytes.with_label_values(&[kind]);
    }
    m.render()
}

/// Series name → label names, from the exposition's sample lines.
fn exported_series(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').expect("closing brace")];
            labels.extend(matchers(body).into_iter().map(|(name, _)| name));
        }
    }
    series
}

/// Splits `a="x",b!~"y"` into (label, operator-and-value) pairs, respecting quotes.
fn matchers(body: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in body.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let split = p.find(['=', '!']).unwrap_or(p.len());
            (p[..split].trim().to_string(), p[split..].to_string())
        })
        .collect()
}

/// What one PromQL expression refers to: metric names, with the label names of
/// their selectors, and the label names of its grouping clauses.
#[derive(Debug, Default)]
struct References {
    metrics: Vec<(String, Vec<String>)>,
    grouping: Vec<String>,
}

const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A small PromQL scanner: enough to find identifiers outside string literals and
/// the `{...}` / `(...)` that follow them.
fn references(expr: &str) -> References {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = References::default();
    let mut i = 0;
    let skip_spaces = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let until = |start: usize, close: char| {
        let mut j = start;
        let mut quoted = None;
        while j < chars.len() {
            match (quoted, chars[j]) {
                (Some(q), c) if c == q => quoted = None,
                (None, '"' | '\'' | '`') => quoted = Some(chars[j]),
                (None, c) if c == close => break,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = until(i + 1, c) + 1;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let next = skip_spaces(i);
        if word.starts_with("replytime_") {
            let mut labels = Vec::new();
            if chars.get(next) == Some(&'{') {
                let close = until(next + 1, '}');
                let body: String = chars[next + 1..close].iter().collect();
                labels = matchers(&body).into_iter().map(|(name, _)| name).collect();
                i = close + 1;
            }
            refs.metrics.push((word, labels));
        } else if GROUPING.contains(&word.as_str()) && chars.get(next) == Some(&'(') {
            let close = until(next + 1, ')');
            let body: String = chars[next + 1..close].iter().collect();
            refs.grouping.extend(
                body.split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
            i = close + 1;
        }
    }
    refs
}

/// Checks one expression against the exposition; returns the problems found.
fn check_expression(
    origin: &str,
    expr: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let refs = references(expr);
    let mut problems = Vec::new();
    let mut available: BTreeSet<String> = SCRAPE_LABELS.iter().map(|l| l.to_string()).collect();
    for (metric, labels) in &refs.metrics {
        let Some(known) = exported.get(metric) else {
            problems.push(format!("{origin}: {metric} is not exported"));
            continue;
        };
        available.extend(known.iter().cloned());
        for label in labels {
            if !known.contains(label) && !SCRAPE_LABELS.contains(&label.as_str()) {
                problems.push(format!("{origin}: {metric} has no label {label:?}"));
            }
        }
    }
    for label in &refs.grouping {
        if !available.contains(label) {
            problems.push(format!(
                "{origin}: grouping label {label:?} is on none of its metrics"
            ));
        }
    }
    problems
}

/// (alert name, expression) of every rule in alerts.yml. The file uses two forms,
/// `expr: <one line>` and `expr: >-` with a more-indented block; anything else
/// makes the count check below fail rather than pass silently.
fn alert_rules(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut rules = Vec::new();
    let mut name = String::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(alert) = trimmed.strip_prefix("- alert:") {
            name = alert.trim().to_string();
        } else if let Some(rest) = trimmed.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest.starts_with(['>', '|']) {
                let own = indent(lines[i]);
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > own)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                rules.push((name.clone(), block.join(" ").trim().to_string()));
            } else {
                rules.push((name.clone(), rest.to_string()));
            }
        }
        i += 1;
    }
    let declared = lines
        .iter()
        .filter(|l| {
            l.trim_start().starts_with("- alert:") || l.trim_start().starts_with("- record:")
        })
        .count();
    assert_eq!(rules.len(), declared, "one expression per rule in {ALERTS}");
    rules
}

/// Every `"expr"` of the dashboard, with its panel title.
fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<(String, String, String)> {
    fn walk(value: &serde_json::Value, title: &str, out: &mut Vec<(String, String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                let title = map.get("title").and_then(|t| t.as_str()).unwrap_or(title);
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    let legend = map.get("legendFormat").and_then(|l| l.as_str());
                    out.push((
                        title.to_string(),
                        expr.to_string(),
                        legend.unwrap_or_default().to_string(),
                    ));
                }
                for v in map.values() {
                    walk(v, title, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "", &mut out);
    out
}

/// Dashboard variables replaced by values PromQL accepts, so promtool can parse
/// the queries.
fn substitute_variables(expr: &str) -> String {
    let substituted = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$instance", ".*")
        .replace("$channel", ".*");
    assert!(
        !substituted.contains('$'),
        "unknown dashboard variable in {expr}"
    );
    substituted
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let path = repo(ALERTS);
    let output = run_promtool(&["check", "rules", path.to_str().unwrap()], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    run_promtool(&["check", "metrics"], Some(&rendered_metrics()));
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics_and_labels() {
    let exported = exported_series(&rendered_metrics());
    let mut problems = Vec::new();

    let rules = alert_rules(&read(ALERTS));
    assert!(rules.len() >= 10, "{ALERTS} has {} rules", rules.len());
    for (name, expr) in &rules {
        problems.extend(check_expression(
            &format!("{ALERTS} {name}"),
            expr,
            &exported,
        ));
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is valid JSON");
    let expressions = dashboard_expressions(&dashboard);
    assert!(
        expressions.len() >= 20,
        "{DASHBOARD} has {} queries",
        expressions.len()
    );
    for (title, expr, legend) in &expressions {
        let origin = format!("{DASHBOARD} {title:?}");
        problems.extend(check_expression(&origin, expr, &exported));
        // A legend naming a label the query does not return shows up as blank.
        let refs = references(expr);
        for part in legend.split("{{").skip(1) {
            let label = part.split("}}").next().unwrap_or_default().trim();
            let known = refs
                .metrics
                .iter()
                .filter_map(|(m, _)| exported.get(m))
                .any(|labels| labels.contains(label))
                || SCRAPE_LABELS.contains(&label);
            if !known {
                problems.push(format!(
                    "{origin}: legend label {label:?} is on none of its metrics"
                ));
            }
        }
    }
    // The variables query real series too.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(definition) = variable["definition"].as_str() {
            problems.extend(check_expression(
                &format!("{DASHBOARD} variable {}", variable["name"]),
                definition,
                &exported,
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboard_is_a_grafana_dashboard_whose_queries_parse() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is valid JSON");
    let schema = dashboard["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    // promtool has no "check expression"; a rules file of recording rules, one per
    // query, makes it parse every query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (_, expr, _)) in dashboard_expressions(&dashboard).iter().enumerate() {
        let expr = serde_json::to_string(&substitute_variables(expr)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard_rules.yml");
    std::fs::write(&path, rules).unwrap();
    run_promtool(&["check", "rules", path.to_str().unwrap()], None);
}

/// The expressions of the alerts whose logic is more than a threshold, evaluated by
/// promtool over synthetic series: firing where they should, silent where not.
#[test]
fn key_alerts_fire_only_when_they_should() {
    let rules: BTreeMap<String, String> = alert_rules(&read(ALERTS)).into_iter().collect();
    let expr = |name: &str| {
        let e = rules
            .get(name)
            .unwrap_or_else(|| panic!("alert {name} in {ALERTS}"));
        serde_json::to_string(e).unwrap()
    };
    let tests = format!(
        r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # a: stuck with WAL to read. b: idle (no lag). c: still in its initial load.
      # d: progressing.
      - series: 'replytime_last_progress_timestamp_seconds{{instance="a", job="replytime"}}'
        values: '0x30'
      - series: 'replytime_replication_lag_bytes{{instance="a", job="replytime"}}'
        values: '4096x30'
      - series: 'replytime_initial_load_rows_total{{instance="a", job="replytime"}}'
        values: '0x30'
      - series: 'replytime_last_progress_timestamp_seconds{{instance="b", job="replytime"}}'
        values: '0x30'
      - series: 'replytime_replication_lag_bytes{{instance="b", job="replytime"}}'
        values: '0x30'
      - series: 'replytime_last_progress_timestamp_seconds{{instance="c", job="replytime"}}'
        values: '0x30'
      - series: 'replytime_replication_lag_bytes{{instance="c", job="replytime"}}'
        values: '4096x30'
      - series: 'replytime_initial_load_rows_total{{instance="c", job="replytime"}}'
        values: '0+1000x30'
      - series: 'replytime_last_progress_timestamp_seconds{{instance="d", job="replytime"}}'
        values: '0+60x30'
      - series: 'replytime_replication_lag_bytes{{instance="d", job="replytime"}}'
        values: '4096x30'
      - series: 'replytime_slot_wal_status{{instance="a", job="replytime", status="reserved"}}'
        values: '0x30'
      - series: 'replytime_slot_wal_status{{instance="a", job="replytime", status="extended"}}'
        values: '1x30'
      - series: 'replytime_slot_wal_status{{instance="a", job="replytime", status="lost"}}'
        values: '0x30'
      - series: 'replytime_slot_wal_status{{instance="b", job="replytime", status="reserved"}}'
        values: '1x30'
      - series: 'replytime_errors_total{{instance="a", job="replytime", kind="sink"}}'
        values: '0+6x30'
      - series: 'replytime_errors_total{{instance="a", job="replytime", kind="source"}}'
        values: '0+6x30'
      - series: 'replytime_errors_total{{instance="b", job="replytime", kind="sink"}}'
        values: '5x30'
      # a: a backlog that never drains. b: busy but drains between batches.
      - series: 'replytime_outbox_pending{{instance="a", job="replytime"}}'
        values: '6000x30'
      - series: 'replytime_outbox_pending{{instance="b", job="replytime"}}'
        values: '6000 6000 6000 6000 6000 6000 6000 6000 6000 6000 0 6000 6000 6000 6000 6000 6000 6000 6000 6000 6000 6000'
    promql_expr_test:
      - expr: {no_progress}
        eval_time: 20m
        exp_samples:
          - labels: '{{instance="a", job="replytime"}}'
            value: 1200
      - expr: {not_reserved}
        eval_time: 20m
        exp_samples:
          - labels: 'replytime_slot_wal_status{{instance="a", job="replytime", status="extended"}}'
            value: 1
      - expr: {sink_errors}
        eval_time: 20m
        exp_samples:
          - labels: '{{instance="a", job="replytime", kind="sink"}}'
            value: 0.1
      - expr: {outbox}
        eval_time: 20m
        exp_samples:
          - labels: '{{instance="a", job="replytime"}}'
            value: 6000
"#,
        no_progress = expr("ReplytimeNoProgress"),
        not_reserved = expr("ReplytimeSlotWalNotReserved"),
        sink_errors = expr("ReplytimeSinkErrors"),
        outbox = expr("ReplytimeOutboxBacklog"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts_test.yml");
    std::fs::write(&path, tests).unwrap();
    run_promtool(&["test", "rules", path.to_str().unwrap()], None);
}

#[test]
fn example_config_loads_with_only_real_keys() {
    let env = |key: &str| {
        (key == "REPLYTIME_SOURCE_URL").then(|| "postgres://replytime@db/crm".to_string())
    };
    let settings = Settings::load(Some(&repo(SYSTEMD_CONFIG)), &env, &Overrides::default())
        .unwrap_or_else(|e| panic!("{SYSTEMD_CONFIG}: {e}"));
    assert_eq!(settings.state_dir(), Path::new("/var/lib/replytime"));
    assert_eq!(settings.slot, "replytime");
}

#[test]
fn manifests_name_only_environment_variables_replytime_reads() {
    let mut known: BTreeSet<String> = [CONFIG_ENV.to_string()].into();
    for key in KEYS {
        known.insert(key.env.to_string());
        known.insert(format!("{}_FILE", key.env));
    }
    let mut unknown = Vec::new();
    for file in MANIFESTS {
        let text = read(file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("REPLYTIME_") {
            let word: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !known.contains(&word) {
                unknown.push(format!("{file}: {word}"));
            }
            rest = &rest[at + word.len()..];
        }
    }
    assert!(
        unknown.is_empty(),
        "not read by replytime:\n{}",
        unknown.join("\n")
    );
}

// ---- the artifacts themselves: built, installed, parsed ----

/// Joins a Dockerfile's continuation lines and drops comments: one instruction a line.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The cargo target directory of this build (the parent of CARGO_TARGET_TMPDIR).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

/// The builder stage's context assembled from exactly its COPY lines (nothing else
/// of the repository), and its `RUN … cargo build …` run there as written, with a
/// copy of this build's target directory so that only what changed is compiled.
/// A copy, not hard links: cargo rewrites its fingerprints in place, so a build
/// in hard-linked files left this build's own stale, and the next `cargo test`
/// (the drills' step of `make test`) recompiled the crates the context moves.
/// A file the build needs and the Dockerfile does not copy fails it.
/// Built with `--build-arg ROCKSDB=debian`, the library this build links: the
/// image's default (the bundled RocksDB) is checked by the ignored test below.
#[test]
fn dockerfile_builds_from_exactly_its_copy_lines() {
    dockerfile_builder_stage("debian");
}

/// The image's default build, RocksDB compiled from the crate's sources: about 14
/// minutes on 2 cores, so not in `make test` (run it with `--ignored` when the
/// Dockerfile or the rocksdb crate changes).
#[test]
#[ignore]
fn dockerfile_builds_the_bundled_rocksdb() {
    dockerfile_builder_stage("bundled");
}

/// The image builds RocksDB from the crate's sources unless told otherwise, with
/// the flag that keeps its CPU counters off `cpuid`.
#[test]
fn dockerfile_defaults_to_the_bundled_rocksdb() {
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    assert!(
        instructions.iter().any(|i| i == "ARG ROCKSDB=bundled"),
        "the builder's ARG ROCKSDB defaults to bundled"
    );
    let build = instructions
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("a RUN with cargo build");
    for needed in [
        "ROCKSDB_COMPILE=1",
        "-DROCKSDB_SCHED_GETCPU_PRESENT",
        "features=bundled-rocksdb",
    ] {
        assert!(build.contains(needed), "the bundled build sets {needed}");
    }
}

/// `make release`, the build for VMs, compiles RocksDB the way the image does: the
/// Makefile's `BUNDLED` settings and the `release` recipe carry the three settings
/// the Dockerfile's bundled build sets (checked above).
#[test]
fn make_release_builds_the_bundled_rocksdb_as_the_image_does() {
    let makefile = read("Makefile");
    let line = |start: &str| {
        makefile
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("the Makefile has a line starting with {start:?}"))
    };
    let bundled = line("BUNDLED = ");
    for needed in [
        "ROCKSDB_COMPILE=1",
        "CXXFLAGS=-DROCKSDB_SCHED_GETCPU_PRESENT",
    ] {
        assert!(
            bundled.contains(needed),
            "the Makefile's BUNDLED sets {needed}"
        );
    }
    let recipe = makefile
        .split("\nrelease:\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("a release target with a recipe");
    assert!(
        recipe.contains("$(BUNDLED)") && recipe.contains("--features bundled-rocksdb"),
        "make release builds with $(BUNDLED) and the bundled-rocksdb feature: {recipe}"
    );
}

/// Runs the builder stage as [`dockerfile_builds_from_exactly_its_copy_lines`]
/// says, with the build argument `ROCKSDB` set to `rocksdb`.
fn dockerfile_builder_stage(rocksdb: &str) {
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    let mut stage = String::new();
    let mut workdir = String::from("/");
    let mut copies: Vec<Vec<String>> = Vec::new();
    let mut build = None;
    for instruction in &instructions {
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((instruction, ""));
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => stage = rest.rsplit(' ').next().unwrap_or_default().to_string(),
            "WORKDIR" if stage == "builder" => workdir = rest.trim().to_string(),
            "COPY" if stage == "builder" => {
                let args: Vec<String> = rest
                    .split_whitespace()
                    .filter(|a| !a.starts_with("--"))
                    .map(str::to_string)
                    .collect();
                assert!(!rest.contains("--from"), "builder COPY --from: {rest}");
                copies.push(args);
            }
            "RUN" if stage == "builder" && rest.contains("cargo build") => {
                build = Some(rest.to_string())
            }
            _ => {}
        }
    }
    assert_eq!(workdir, "/build", "the builder's WORKDIR");
    assert!(copies.len() >= 3, "COPY lines: {copies:?}");
    let build = build.expect("a RUN with cargo build in the builder stage");

    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("build");
    std::fs::create_dir_all(&context).unwrap();
    for args in &copies {
        let (dest, sources) = args.split_last().expect("COPY src… dest");
        let dest = context.join(dest.trim_start_matches("/build/"));
        std::fs::create_dir_all(
            if sources.len() > 1 || args.last().unwrap().ends_with('/') {
                &dest
            } else {
                dest.parent().unwrap()
            },
        )
        .unwrap();
        for source in sources {
            let from = repo(source);
            assert!(from.exists(), "COPY {source}: not in the repository");
            // `cp -a` keeps the modification times, so cargo finds unchanged
            // sources fresh; `dir/.` copies a directory's contents, as COPY does.
            let (from, to) = if from.is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
                (from.join("."), dest.clone())
            } else if sources.len() > 1 || dest.is_dir() {
                (from, dest.join(Path::new(source).file_name().unwrap()))
            } else {
                (from, dest.clone())
            };
            common::run(Command::new("cp").arg("-a").arg(&from).arg(&to), "cp");
        }
    }

    // The RUN as written, without the BuildKit mount flags and without the step
    // that installs the binary into the image (checked below instead).
    let cleaned = build
        .split_whitespace()
        .filter(|w| !w.starts_with("--mount="))
        .collect::<Vec<_>>()
        .join(" ");
    let script: Vec<&str> = cleaned.split("&&").map(str::trim).collect();
    let install = script
        .iter()
        .find(|step| step.starts_with("install "))
        .expect("the RUN installs the built binary");
    assert!(
        install.contains("target/release/replytime"),
        "the install step takes cargo's output: {install}"
    );
    let steps: Vec<&str> = script
        .iter()
        .copied()
        .filter(|step| !step.starts_with("install "))
        .collect();
    let target = target_dir().join(format!("dockerfile-check-{rocksdb}"));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target).unwrap();
    common::run(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(target_dir().join("release"))
            .arg(target.join("release")),
        "copy the target directory",
    );
    let out = Command::new("sh")
        .arg("-ec")
        .arg(steps.join(" && "))
        .current_dir(&context)
        .env("CARGO_TARGET_DIR", &target)
        .env("ROCKSDB", rocksdb)
        .stdin(Stdio::null())
        .output()
        .expect("run the Dockerfile's build");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Dockerfile's build failed in a context of its COPY lines:\n{log}"
    );
    let version = common::run(
        Command::new(target.join("release/replytime")).arg("--version"),
        "the built binary",
    );
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let _ = std::fs::remove_dir_all(&target);
}

/// `systemd-analyze verify` on the unit (its binary path pointed at this build).
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        panic!("systemd-analyze not found (Debian package `systemd`): run scripts/install-deps.sh");
    };
    let unit = read("deploy/systemd/replytime.service")
        .replace("/usr/local/bin/replytime", env!("CARGO_BIN_EXE_replytime"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replytime.service");
    std::fs::write(&path, unit).unwrap();
    let out = common::run(
        Command::new(analyze).arg("verify").arg(&path),
        "systemd-analyze verify",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("replytime.service:"),
        "systemd-analyze warns about the unit:\n{stderr}"
    );
}

/// The unit's documented install (the `install`/`cp` lines of its header) done into
/// a temporary root, then the binary run the way `DynamicUser=` runs it: as a fresh
/// uid that owns nothing, with the unit's `Environment=`, its credential and its
/// `StateDirectory=` (the paths under the temporary root). It must load its
/// configuration and become ready against a real database.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_unit_installed_as_documented_runs_as_a_dynamic_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        panic!("this test switches to a fresh uid and must run as root (as CI does)");
    }
    let unit = read("deploy/systemd/replytime.service");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for path in [dir.path(), root.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let in_root = |path: &str| root.join(path.trim_start_matches('/'));
    let db = common::fresh_database().await;
    db.apply_source_schema().await;
    for line in unit.lines() {
        let Some(command) = line.strip_prefix("#   ") else {
            continue;
        };
        let command = command.split(" #").next().unwrap_or_default().trim();
        let words: Vec<&str> = command.split_whitespace().collect();
        if !matches!(words.first(), Some(&"install") | Some(&"cp")) {
            continue;
        }
        let args: Vec<PathBuf> = words[1..]
            .iter()
            .map(|word| match *word {
                "replytime" => PathBuf::from(env!("CARGO_BIN_EXE_replytime")),
                w if w.starts_with('/') && w != "/dev/null" => in_root(w),
                w if w.starts_with("deploy/") => repo(w),
                w => PathBuf::from(w),
            })
            .collect();
        // The destination's directory exists on a real system.
        let dest = args.last().expect("a destination");
        let dir = if words.last().unwrap().ends_with('/') {
            dest.as_path()
        } else {
            dest.parent().unwrap()
        };
        std::fs::create_dir_all(dir).unwrap();
        common::run(Command::new(words[0]).args(&args), command);
    }
    std::fs::write(in_root("/etc/replytime/source-url"), &db.url).unwrap();

    // What systemd does for the service: a uid of the DynamicUser range that owns no
    // file, the credential copied for it, the state directory created for it.
    let uid = 61184 + std::process::id() % 4000;
    let credentials = in_root("/run/credentials/replytime.service");
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::copy(
        in_root("/etc/replytime/source-url"),
        credentials.join("source-url"),
    )
    .unwrap();
    let state = in_root("/var/lib/replytime");
    std::fs::create_dir_all(&state).unwrap();
    for (path, mode) in [
        (&credentials, 0o500),
        (&credentials.join("source-url"), 0o400),
        (&state, 0o700),
    ] {
        std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = if v.starts_with('/') {
                in_root(v).display().to_string()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "REPLYTIME_CONFIG"), "{env:?}");
    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    // The host paths of StateDirectory= and of the metrics port stand in for the
    // unit's own (the TOML names /var/lib/replytime; the environment overrides it).
    env.push(("REPLYTIME_STATE_DIR".into(), state.display().to_string()));
    env.push(("REPLYTIME_METRICS_ADDR".into(), addr.clone()));
    env.push((
        "REPLYTIME_SLOT".into(),
        format!("rt_systemd_{}", std::process::id()),
    ));
    env.push((
        "REPLYTIME_PUBLICATION".into(),
        format!("rt_systemd_{}", std::process::id()),
    ));
    let binary = in_root("/usr/local/bin/replytime");
    let log = dir.path().join("replytime.log");
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(&binary)
        .arg("run")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run the binary as a fresh uid (setpriv, util-linux)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ready = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Err(format!("exited with {status}"));
        }
        if http_status(&addr, "/readyz") == Some(200) {
            break Ok(());
        }
        if std::time::Instant::now() > deadline {
            break Err("not ready within 60 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    if let Err(why) = ready {
        panic!("the unit's service under uid {uid}: {why}\n{log_text}");
    }
    assert!(status.success(), "SIGTERM: {status}\n{log_text}");
}

/// A blocking `GET path`: the status code, if the server answered.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

// ---- Kubernetes manifests, parsed ----

type Yaml = serde_norway::Value;

fn yaml_documents(relative: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(&read(relative))
        .map(|doc| Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The longest a graceful stop takes: replytime's shutdown budget (the drain, the
/// final confirmation and closing the stream, see `pipeline::shutdown`) and time
/// for the process to exit (closing RocksDB, the runtime).
const STOP_SECONDS: i64 = SHUTDOWN_BUDGET.as_secs() as i64 + EXIT_SECONDS;

/// Left to the process after the budget, before a supervisor may kill it.
const EXIT_SECONDS: i64 = 10;

/// `Key=` of a systemd unit file (the last one wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim().to_string())
        .next()
}

#[test]
fn the_shutdown_budget_fits_the_stop_timeouts_of_the_unit_and_the_pods() {
    let unit = read(SYSTEMD_UNIT);
    let timeout = unit_value(&unit, "TimeoutStopSec").unwrap_or_else(|| {
        panic!("{SYSTEMD_UNIT}: no TimeoutStopSec (the default 90 s is implicit)")
    });
    let timeout: i64 = timeout
        .strip_suffix('s')
        .unwrap_or(&timeout)
        .parse()
        .unwrap_or_else(|e| panic!("{SYSTEMD_UNIT}: TimeoutStopSec={timeout}: {e}"));
    assert!(
        STOP_SECONDS <= timeout,
        "{SYSTEMD_UNIT}: TimeoutStopSec={timeout} is shorter than the shutdown budget \
         ({SHUTDOWN_BUDGET:?}) and {EXIT_SECONDS} s to exit"
    );
    assert_eq!(unit_value(&unit, "KillSignal").as_deref(), Some("SIGTERM"));
    for file in [
        "deploy/kubernetes/statefulset.yaml",
        "deploy/kubernetes/sidecar-deployment.yaml",
        "deploy/kubernetes/sharded-statefulset.yaml",
    ] {
        for doc in yaml_documents(file) {
            let pod = &doc["spec"]["template"]["spec"];
            if pod.is_null() || doc["kind"].as_str() == Some("Job") {
                continue;
            }
            // Kubernetes' default grace period is 30 s.
            let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            assert!(
                STOP_SECONDS <= grace,
                "{file}: terminationGracePeriodSeconds {grace} is shorter than the shutdown \
                 budget ({SHUTDOWN_BUDGET:?}) and {EXIT_SECONDS} s to exit"
            );
        }
    }
    for file in [SYSTEMD_UNIT, "deploy/kubernetes/statefulset.yaml"] {
        let budget = format!("{} s shutdown budget", SHUTDOWN_BUDGET.as_secs());
        assert!(read(file).contains(&budget), "{file}: names the {budget}");
    }
}

/// One replytime container (in `containers` or `initContainers`) of a pod spec.
fn replytime_container<'a>(pod: &'a Yaml, origin: &str) -> (&'a Yaml, bool) {
    for (list, init) in [("containers", false), ("initContainers", true)] {
        if let Some(found) = pod[list]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["image"].as_str().is_some_and(|i| i.contains("replytime")))
        {
            return (found, init);
        }
    }
    panic!("{origin}: no replytime container");
}

fn env_value<'a>(container: &'a Yaml, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))?["value"]
        .as_str()
}

/// What every pod running replytime must have; returns the problems found.
fn check_pod(origin: &str, pod: &Yaml, claim_templates: &[String], daemon: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("{origin}: {what}"));
        }
    };
    let (container, _) = replytime_container(pod, origin);
    need(
        pod["securityContext"]["runAsNonRoot"].as_bool() == Some(true),
        "runAsNonRoot",
    );
    need(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true),
        "readOnlyRootFilesystem",
    );
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            need(
                !container["resources"][kind][resource].is_null(),
                &format!("resources.{kind}.{resource}"),
            );
        }
    }
    let mounts: Vec<(&str, &str)> = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?, m["mountPath"].as_str()?)))
        .collect();
    let volume = |name: &str| {
        pod["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|v| v["name"].as_str() == Some(name))
            .cloned()
    };
    let tmp = mounts.iter().find(|(_, path)| *path == "/tmp");
    need(
        tmp.and_then(|(name, _)| volume(name))
            .is_some_and(|v| !v["emptyDir"].is_null()),
        "a writable emptyDir at /tmp",
    );
    let state_dir = env_value(container, "REPLYTIME_STATE_DIR");
    need(state_dir.is_some(), "REPLYTIME_STATE_DIR");
    let state = mounts.iter().find(|(_, path)| Some(*path) == state_dir);
    need(
        state.is_some_and(|(name, _)| {
            claim_templates.iter().any(|t| t == name)
                || volume(name).is_some_and(|v| !v["persistentVolumeClaim"].is_null())
        }),
        "a PersistentVolumeClaim mounted at the state directory",
    );
    if !daemon {
        return problems;
    }
    need(
        pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30) >= STOP_SECONDS,
        &format!("terminationGracePeriodSeconds >= the stop ({STOP_SECONDS} s)"),
    );
    let port = container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["containerPort"].as_i64() == Some(9811));
    need(
        port.is_some_and(|p| p["name"].as_str() == Some("metrics")),
        "containerPort 9811 named metrics",
    );
    need(
        env_value(container, "REPLYTIME_METRICS_ADDR").is_some_and(|a| a.ends_with(":9811")),
        "REPLYTIME_METRICS_ADDR on port 9811",
    );
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container[probe]["httpGet"];
        if container[probe].is_null() {
            continue;
        }
        need(
            get["path"].as_str() == Some(path),
            &format!("{probe} on {path}"),
        );
        need(
            get["port"].as_str() == Some("metrics") || get["port"].as_i64() == Some(9811),
            &format!("{probe} on the metrics port"),
        );
    }
    need(!container["livenessProbe"].is_null(), "a liveness probe");
    need(container["args"][0].as_str() == Some("run"), "args [run]");
    problems
}

#[test]
fn kubernetes_manifests_hold_what_operating_replytime_needs() {
    let mut problems = Vec::new();
    let workload = |file: &str, kind: &str| {
        yaml_documents(file)
            .into_iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("{file}: no {kind}"))
    };
    let templates = |w: &Yaml| -> Vec<String> {
        w["spec"]["volumeClaimTemplates"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|t| t["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    };

    // The recommended shape: one replica, one pod at a time, its own readiness.
    let file = "deploy/kubernetes/statefulset.yaml";
    let sts = workload(file, "StatefulSet");
    assert_eq!(
        sts["spec"]["replicas"].as_i64(),
        Some(1),
        "{file}: replicas"
    );
    assert_ne!(
        sts["spec"]["podManagementPolicy"].as_str(),
        Some("Parallel"),
        "{file}"
    );
    assert!(
        matches!(
            sts["spec"]["updateStrategy"]["type"].as_str(),
            None | Some("RollingUpdate") | Some("OnDelete")
        ),
        "{file}: updateStrategy"
    );
    let pod = &sts["spec"]["template"]["spec"];
    problems.extend(check_pod(file, pod, &templates(&sts), true));
    let (container, _) = replytime_container(pod, file);
    assert!(
        !container["readinessProbe"].is_null(),
        "{file}: a readiness probe"
    );

    // The sidecar never takes the application out of service.
    let file = "deploy/kubernetes/sidecar-deployment.yaml";
    let deployment = workload(file, "Deployment");
    assert_eq!(
        deployment["spec"]["replicas"].as_i64(),
        Some(1),
        "{file}: replicas"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["type"].as_str(),
        Some("Recreate"),
        "{file}: strategy"
    );
    assert!(
        read(file).contains("EVERY deploy of the application is a short outage"),
        "{file}: the cost of Recreate is stated"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    problems.extend(check_pod(file, pod, &[], true));
    let (container, init) = replytime_container(pod, file);
    let native = init && container["restartPolicy"].as_str() == Some("Always");
    assert!(
        native,
        "{file}: replytime is a native sidecar (init container, restartPolicy Always)"
    );
    assert!(
        container["readinessProbe"].is_null(),
        "{file}: no readiness probe on the sidecar"
    );

    let file = "deploy/kubernetes/sharded-statefulset.yaml";
    let shards = workload(file, "StatefulSet");
    problems.extend(check_pod(
        file,
        &shards["spec"]["template"]["spec"],
        &templates(&shards),
        true,
    ));

    // The stopped-daemon commands: a Job on the StatefulSet's volume.
    let file = "deploy/kubernetes/maintenance-job.yaml";
    let job = workload(file, "Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"), "{file}");
    assert_eq!(job["spec"]["backoffLimit"].as_i64(), Some(0), "{file}");
    problems.extend(check_pod(file, pod, &[], false));
    let claim = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str());
    let sts_claim = format!(
        "{}-{}-0",
        templates(&sts)[0],
        sts["metadata"]["name"].as_str().unwrap()
    );
    assert_eq!(
        claim,
        Some(sts_claim.as_str()),
        "{file}: the StatefulSet's volume"
    );
    let text = read(file);
    for command in ["backfill", "replay", "rebuild", "teardown", "kubectl scale"] {
        assert!(
            text.contains(command),
            "{file}: the recipe covers {command}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

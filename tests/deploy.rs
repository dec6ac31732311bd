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

use replytime::change::Table;
use replytime::config::{ENV_KEYS, Overrides, Settings};
use replytime::ops::metrics::METRICS;

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DASHBOARD: &str = "deploy/grafana/replytime.json";
const SYSTEMD_CONFIG: &str = "deploy/systemd/replytime.toml";
const MANIFESTS: &[&str] = &[
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
    let mut known: BTreeSet<String> = ["REPLYTIME_CONFIG".to_string()].into();
    for (var, _) in ENV_KEYS {
        known.insert(var.to_string());
        known.insert(format!("{var}_FILE"));
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

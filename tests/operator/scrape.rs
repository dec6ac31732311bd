//! Reading the daemon's HTTP endpoints: `GET` over a plain TCP stream, the text
//! exposition parsed into samples, and `promtool check metrics`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scrape of `/metrics`: every sample with its labels.
pub struct Scrape {
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    pub fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("sample has a value");
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
                };
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, BTreeMap::new()),
                };
                (name.to_string(), labels, value)
            })
            .collect();
        Scrape { text, samples }
    }

    /// The samples of `name` whose labels include `labels`.
    pub fn matching<'s>(
        &'s self,
        name: &'s str,
        labels: &'s [(&'s str, &'s str)],
    ) -> impl Iterator<Item = (&'s BTreeMap<String, String>, f64)> + 's {
        self.samples
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, l, v)| (l, *v))
    }

    /// The value of one series; 0 when the daemon has not created it yet (a
    /// labelled child appears on first use).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self.matching(name, labels).map(|(_, v)| v).collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().copied().unwrap_or(0.0)
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    // Label values here never hold quotes or commas (tables, channels, kinds).
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label is key=value");
            (key.to_string(), value.trim_matches('"').to_string())
        })
        .collect()
}

/// `GET path` on the daemon's HTTP address: (status code, body).
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).expect("HTTP response is utf-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

pub async fn scrape(addr: &str) -> Scrape {
    let (status, body) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    Scrape::parse(body)
}

/// Runs `promtool check metrics` on an exposition; fails with its findings.
pub fn promtool_check_metrics(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    stdin.write_all(exposition.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().expect("wait for promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// promtool's path; a failure (never a skip) that says how to install it.
pub fn promtool() -> std::path::PathBuf {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .chain(std::env::var_os("PROMTOOL").map(Into::into))
        .find(|p| p.is_file())
        .expect("promtool not found (Debian package `prometheus`): run scripts/install-deps.sh")
}

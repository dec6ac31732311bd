//! What the figures were measured on (cores, CPU, versions, load), and the per-process
//! counters the stages read from `/proc`: peak RSS, CPU time, directory sizes.

use std::path::Path;
use std::process::Command;

/// One line per fact, printed above the results table.
pub async fn describe(client: &tokio_postgres::Client) -> Vec<(String, String)> {
    let pg: String = client
        .query_one("SELECT version()", &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    vec![
        ("nproc".into(), output("nproc", &[])),
        ("cpu".into(), cpu),
        ("memory".into(), mem_gib),
        ("os".into(), os_name()),
        ("postgres".into(), pg),
        ("rustc".into(), output("rustc", &["--version"])),
        (
            "replytime".into(),
            format!(
                "{} ({})",
                env!("CARGO_PKG_VERSION"),
                output("git", &["describe", "--always", "--dirty"])
            ),
        ),
        ("load average at start".into(), load_average()),
    ]
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| {
                    l.trim_start_matches("PRETTY_NAME=")
                        .trim_matches('"')
                        .into()
                })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Peak resident set size of `pid` in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User + system CPU seconds used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds used so far by the threads of `pid` whose name starts with
/// `prefix` (RocksDB names its flush and compaction threads `rocksdb:…`).
pub fn threads_cpu_seconds(pid: u32, prefix: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0.0;
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.starts_with(prefix) {
            total += stat_cpu_seconds(&path.join("stat").to_string_lossy()).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// User + system CPU seconds in a `/proc/…/stat` file.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: the fields that follow start after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = output("getconf", &["CLK_TCK"])
        .parse::<f64>()
        .unwrap_or(100.0);
    Some(ticks as f64 / per_second)
}

/// Total size of the regular files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

//! The backlog bench's results as markdown: CPU per change, the state's reads and
//! the work behind each change per backlog size, with the ratio of the largest to
//! the baseline (the first size); then what the largest state is made of.

use std::time::Duration;

use replytime::store::{ReadCounts, StateComposition};

use super::{Applied, Bench};

pub fn print(
    bench: &Bench,
    results: &[(Applied, Vec<f64>)],
    composition: Option<&StateComposition>,
    elapsed: Duration,
) {
    let s = &bench.settings;
    println!("\n## replytime backlog benchmark (engine and state alone)\n");
    for (key, value) in machine() {
        println!("- {key}: {value}");
    }
    println!(
        "- settings: {:?} changes ({}); read cache {} MiB, block cache {} MiB, chunk_changes {}, sink_batch_ops {}; took {:.0} s",
        bench.changes,
        bench.leads.describe(),
        s.read_cache_bytes >> 20,
        s.block_cache_bytes >> 20,
        s.chunk_changes,
        s.sink_batch_ops,
        elapsed.as_secs_f64()
    );
    for (applied, runs) in results {
        let runs: Vec<String> = runs.iter().map(|us| format!("{us:.1}")).collect();
        println!(
            "- backlog {}: generated in {:.1} s (untimed); total CPU per change of each run: {} µs{}",
            applied.changes,
            applied.generate_seconds,
            runs.join(", "),
            if runs.len() > 1 {
                " (the median run is shown)"
            } else {
                ""
            }
        );
    }
    cpu_table(results);
    tenths_table(results);
    reads_table(results);
    work_table(results);
    if let Some(composition) = composition {
        composition_table(composition);
    }
}

/// `largest / baseline`, formatted.
fn ratio(large: f64, base: f64) -> String {
    if base > 0.0 && large.is_finite() {
        format!("{:.2}", large / base)
    } else {
        "–".into()
    }
}

fn cpu_table(results: &[(Applied, Vec<f64>)]) {
    println!("\n### CPU per change (apply phase)\n");
    println!(
        "| backlog | transactions | state commits | wall | changes/s | applying thread | outbox consumer + retention | RocksDB threads | total |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let columns = |a: &Applied| {
        [
            a.per_change_us(a.apply_cpu),
            a.per_change_us(a.consumer_cpu),
            a.per_change_us(a.background_cpu()),
            a.total_cpu_us(),
        ]
    };
    for (a, _) in results {
        let c = columns(a);
        println!(
            "| {} | {} | {} | {:.1} s | {:.0} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
            a.changes,
            a.transactions,
            a.commits,
            a.wall_seconds,
            a.changes as f64 / a.wall_seconds,
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
    if let [(base, _), .., (large, _)] = results {
        let (b, l) = (columns(base), columns(large));
        let wall = |a: &Applied| a.wall_seconds / a.changes as f64;
        println!(
            "| ratio {} / {} | | | {} per change | | {} | {} | {} | **{}** |",
            large.changes,
            base.changes,
            ratio(wall(large), wall(base)),
            ratio(l[0], b[0]),
            ratio(l[1], b[1]),
            ratio(l[2], b[2]),
            ratio(l[3], b[3])
        );
    }
}

fn tenths_table(results: &[(Applied, Vec<f64>)]) {
    println!("\n### The applying thread's CPU per change, by tenth of the drain\n");
    let header: Vec<String> = (1..=10).map(|t| t.to_string()).collect();
    println!("| backlog | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(10));
    for (a, _) in results {
        // A stretch over several tenths fills each of them.
        let cells: Vec<String> = a
            .tenths
            .iter()
            .flat_map(|t| (t.from..t.to).map(move |_| format!("{:.1}", t.us_per_change)))
            .collect();
        println!("| {} | {} |", a.changes, cells.join(" | "));
    }
}

/// A count of `counts` by label: "point hit", "get", or a ticker's label.
fn count(counts: &ReadCounts, label: &str) -> f64 {
    let cache = counts
        .read_cache
        .iter()
        .find(|(kind, result, _)| format!("{kind} {result}") == label)
        .map(|c| c.2);
    let rocksdb = counts
        .rocksdb
        .iter()
        .find(|(k, _)| *k == label)
        .map(|c| c.1);
    let ticker = counts
        .tickers
        .iter()
        .find(|(k, _)| *k == label)
        .map(|c| c.1);
    cache
        .or(rocksdb)
        .or(ticker)
        .unwrap_or_else(|| panic!("no read counter {label:?}")) as f64
}

/// Hits over lookups; NaN (shown as "–") without lookups.
fn hit_rate(counts: &ReadCounts, hits: &str, misses: &str) -> f64 {
    let (h, m) = (count(counts, hits), count(counts, misses));
    h / (h + m)
}

/// Read figures: (header, value, is a rate).
fn reads(a: &Applied) -> Vec<(&'static str, f64, bool)> {
    let r = &a.reads;
    let per_change = |label| count(r, label) / a.changes as f64;
    vec![
        (
            "read cache point hits",
            hit_rate(r, "point hit", "point miss"),
            true,
        ),
        (
            "read cache range hits",
            hit_rate(r, "range hit", "range miss"),
            true,
        ),
        ("cache fills dropped", per_change("any fill_dropped"), false),
        ("RocksDB gets", per_change("get"), false),
        ("prefix seeks", per_change("prefix_seek"), false),
        ("total-order seeks", per_change("seek"), false),
        (
            "block cache data hits",
            hit_rate(r, "block_cache_data_hit", "block_cache_data_miss"),
            true,
        ),
        (
            "block cache index hits",
            hit_rate(r, "block_cache_index_hit", "block_cache_index_miss"),
            true,
        ),
        (
            "block cache filter hits",
            hit_rate(r, "block_cache_filter_hit", "block_cache_filter_miss"),
            true,
        ),
        ("gets found in L0", per_change("get_l0_hit"), false),
        ("in L1", per_change("get_l1_hit"), false),
        ("in L2+", per_change("get_l2_and_up_hit"), false),
        (
            "compaction bytes read + written",
            per_change("compaction_read_bytes") + per_change("compaction_write_bytes"),
            false,
        ),
    ]
}

fn reads_table(results: &[(Applied, Vec<f64>)]) {
    println!("\n### The state's reads (per change, or hit rate)\n");
    let Some((first, _)) = results.first() else {
        return;
    };
    let headers: Vec<&str> = reads(first).iter().map(|(h, _, _)| *h).collect();
    println!("| backlog | {} |", headers.join(" | "));
    println!("|---|{}", "---|".repeat(headers.len()));
    let show = |(_, value, rate): &(&str, f64, bool)| {
        if value.is_nan() {
            "–".to_string()
        } else if *rate {
            format!("{:.1} %", value * 100.0)
        } else if *value >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.3}")
        }
    };
    for (a, _) in results {
        let cells: Vec<String> = reads(a).iter().map(show).collect();
        println!("| {} | {} |", a.changes, cells.join(" | "));
    }
    if let [(base, _), .., (large, _)] = results {
        let cells: Vec<String> = reads(large)
            .iter()
            .zip(reads(base))
            .map(|((_, l, _), (_, b, _))| ratio(*l, b))
            .collect();
        println!(
            "| ratio {} / {} | {} |",
            large.changes,
            base.changes,
            cells.join(" | ")
        );
    }
}

fn work_table(results: &[(Applied, Vec<f64>)]) {
    println!("\n### The work behind each change\n");
    println!(
        "| backlog | anchors derived | relabelled | sink upserts | sink deletes | changes per state commit | outbox entries | sink batches (ops each) | event-log entries trimmed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (a, _) in results {
        let per_change = |n: u64| n as f64 / a.changes as f64;
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.3} per change | {} ({:.0}) | {} |",
            a.changes,
            per_change(a.derived),
            per_change(a.relabelled),
            per_change(a.upserts),
            per_change(a.deletes),
            a.changes as f64 / a.commits.max(1) as f64,
            per_change(a.consumer.entries),
            a.consumer.batches,
            a.consumer.ops as f64 / a.consumer.batches.max(1) as f64,
            a.consumer.trimmed
        );
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn composition_table(c: &StateComposition) {
    println!("\n### What the largest state is made of (`state` column family)\n");
    println!("| family | keys | key bytes | value bytes | bytes per key | share of bytes |");
    println!("|---|---|---|---|---|---|");
    let total: u64 = c.families.iter().map(|f| f.key_bytes + f.value_bytes).sum();
    let keys: u64 = c.families.iter().map(|f| f.keys).sum();
    let mut families = c.families.clone();
    families.sort_by_key(|f| std::cmp::Reverse(f.key_bytes + f.value_bytes));
    for f in &families {
        let bytes = f.key_bytes + f.value_bytes;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} % |",
            f.cf.name(),
            f.keys,
            mib(f.key_bytes),
            mib(f.value_bytes),
            bytes as f64 / f.keys.max(1) as f64,
            bytes as f64 / total.max(1) as f64 * 100.0
        );
    }
    println!(
        "| all | {keys} | {} | {} | {:.0} | 100 % |",
        mib(c.families.iter().map(|f| f.key_bytes).sum()),
        mib(c.families.iter().map(|f| f.value_bytes).sum()),
        total as f64 / keys.max(1) as f64
    );
    let levels: Vec<String> = c
        .files_at_level
        .iter()
        .enumerate()
        .map(|(level, files)| format!("L{level} {files}"))
        .collect();
    println!(
        "\nSST files {} on disk for {} of keys and values ({:.2} bytes on disk per logical byte; L0 and L1 uncompressed); files per level: {}; memtables {}.",
        mib(c.sst_bytes),
        mib(total),
        c.sst_bytes as f64 / total.max(1) as f64,
        levels.join(", "),
        mib(c.memtable_bytes)
    );
}

/// The machine and the build, for the header.
fn machine() -> Vec<(&'static str, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let git = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        ("cores", cores.to_string()),
        ("cpu", cpu),
        ("load average at end", load),
        (
            "replytime",
            format!("{} ({git})", env!("CARGO_PKG_VERSION")),
        ),
    ]
}

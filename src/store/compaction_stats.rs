//! What RocksDB's flushes and compactions cost, per column family and level, read
//! from its `rocksdb.cfstats-no-file-histogram` property and logged when the store
//! closes: the place to look when the background threads' CPU grows.
//!
//! ```text
//!  Level    Files   Size     Score Read(GB) ... W-Amp ... Comp(sec) CompMergeCPU(sec) Comp(cnt) ...
//!    L0      2/0    1.23 MB   0.5      0.0  ...   1.0 ...      0.10              0.06         1 ...
//!   Sum      ...
//!  Flush(GB): cumulative 0.002, interval 0.002
//! ```
//!
//! Level L0's row includes the flushes (RocksDB books a flush as a compaction into
//! L0), so `Sum` is everything the background threads did for that family.

use super::{Cf, PHYSICAL, Store};

/// One row of a family's compaction table.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LevelStats {
    /// `L0`, `L1`, ... or `Sum`.
    pub(crate) level: String,
    pub(crate) files: String,
    pub(crate) size: String,
    pub(crate) read_gb: f64,
    pub(crate) write_gb: f64,
    pub(crate) w_amp: f64,
    pub(crate) comp_seconds: f64,
    pub(crate) comp_merge_cpu_seconds: f64,
    pub(crate) comp_count: u64,
    pub(crate) key_in: String,
    pub(crate) key_drop: String,
}

/// Parses the level rows (`L<n>` and `Sum`) of the first compaction table in a
/// `rocksdb.cfstats` text, and the cumulative flush volume (`Flush(GB)`).
pub(crate) fn parse(text: &str) -> (Vec<LevelStats>, Option<f64>) {
    let mut header: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"Level") if header.is_empty() => header = fields,
            // The second table (by thread priority) starts with `Priority`.
            Some(&"Priority") => break,
            Some(level)
                if !header.is_empty()
                    && (*level == "Sum" || level.starts_with('L'))
                    && fields.len() == header.len() + 1 =>
            {
                rows.push(level_row(&header, &fields));
            }
            _ => {}
        }
    }
    let flush_gb = text.lines().find_map(|line| {
        let rest = line.strip_prefix("Flush(GB): cumulative ")?;
        rest.split(',').next()?.trim().parse().ok()
    });
    (rows, flush_gb)
}

/// One row: the size takes two fields ("1.23 MB") under one header ("Size").
fn level_row(header: &[&str], fields: &[&str]) -> LevelStats {
    let value = |name: &str| -> &str {
        let Some(column) = header.iter().position(|h| *h == name) else {
            return "";
        };
        let index = if column >= 3 { column + 1 } else { column };
        fields.get(index).copied().unwrap_or("")
    };
    let number = |name: &str| value(name).parse::<f64>().unwrap_or(0.0);
    LevelStats {
        level: fields[0].to_string(),
        files: value("Files").to_string(),
        size: format!("{} {}", fields[2], fields[3]),
        read_gb: number("Read(GB)"),
        write_gb: number("Write(GB)"),
        w_amp: number("W-Amp"),
        comp_seconds: number("Comp(sec)"),
        comp_merge_cpu_seconds: number("CompMergeCPU(sec)"),
        comp_count: value("Comp(cnt)").parse().unwrap_or(0),
        key_in: value("KeyIn").to_string(),
        key_drop: value("KeyDrop").to_string(),
    }
}

impl Store {
    /// Logs the reads of the state that reached RocksDB since open, per logical
    /// family: point gets that found their key and those that looked for one
    /// that is not there (each of those probes the filters of every file it may
    /// be in), and range reads that found keys of their prefix and those that
    /// found none.
    pub(crate) fn log_state_reads(&self) {
        let counts = self.cache().counts();
        let by_family = counts.gets_by_family.iter().zip(&counts.ranges_by_family);
        for (cf, ([found, absent], [ranges, empty_ranges])) in Cf::ALL.iter().zip(by_family) {
            if found + absent + ranges + empty_ranges > 0 {
                tracing::info!(
                    family = cf.name(),
                    found,
                    absent,
                    ranges,
                    empty_ranges,
                    "rocksdb reads of the state"
                );
            }
        }
    }

    /// Logs what the read cache holds at close, by logical family.
    pub(crate) fn log_read_cache_holdings(&self) {
        let holdings = self.cache().holdings();
        for (cf, held) in Cf::ALL.iter().zip(holdings) {
            if held.points + held.ranges > 0 {
                tracing::info!(
                    family = cf.name(),
                    points = held.points,
                    point_bytes = held.point_bytes,
                    ranges = held.ranges,
                    empty_ranges = held.empty_ranges,
                    range_entries = held.range_entries,
                    range_bytes = held.range_bytes,
                    "read cache holdings"
                );
            }
        }
    }

    /// Logs each family's flush and compaction figures since open, per level
    /// (levels that hold files or did work) and in sum.
    pub(crate) fn log_compaction_stats(&self) {
        for name in PHYSICAL {
            let Some(handle) = self.db.cf_handle(name) else {
                continue;
            };
            let Ok(Some(text)) = self
                .db
                .property_value_cf(handle, "rocksdb.cfstats-no-file-histogram")
            else {
                continue;
            };
            let (rows, flush_gb) = parse(&text);
            for row in rows
                .iter()
                .filter(|r| r.level == "Sum" || r.comp_count > 0 || !r.files.starts_with("0/"))
            {
                tracing::info!(
                    cf = name,
                    level = %row.level,
                    files = %row.files,
                    size = %row.size,
                    flush_gb = if row.level == "Sum" { flush_gb.unwrap_or(0.0) } else { 0.0 },
                    read_gb = row.read_gb,
                    write_gb = row.write_gb,
                    w_amp = row.w_amp,
                    comp_seconds = row.comp_seconds,
                    comp_merge_cpu_seconds = row.comp_merge_cpu_seconds,
                    comp_count = row.comp_count,
                    key_in = %row.key_in,
                    key_drop = %row.key_drop,
                    "rocksdb compaction stats"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// RocksDB 7.8's table, as `rocksdb.cfstats` prints it.
    const TEXT: &str = "\
** Compaction Stats [state] **
Level    Files   Size     Score Read(GB)  Rn(GB) Rnp1(GB) Write(GB) Wnew(GB) Moved(GB) W-Amp Rd(MB/s) Wr(MB/s) Comp(sec) CompMergeCPU(sec) Comp(cnt) Avg(sec) KeyIn KeyDrop Rblob(GB) Wblob(GB)
------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------------
  L0      2/0    4.10 MB   0.5      0.1     0.0      0.0       0.3      0.0       0.0   1.0      0.0     22.1      1.50              1.25         7    0.102     12K    1K       0.0       0.0
  L1      1/0    2.25 MB   0.0      0.0     0.0      0.0       0.0      0.0       0.0   0.0      0.0      0.0      0.00              0.00         0    0.000       0      0       0.0       0.0
 Sum      3/0    6.35 MB   0.0      0.1     0.0      0.0       0.3      0.0       0.0   1.0      0.0     22.1      1.50              1.25         7    0.102     12K    1K       0.0       0.0
 Int      0/0    0.00 KB   0.0      0.0     0.0      0.0       0.0      0.0       0.0   1.0      0.0     22.1      0.10              0.06         1    0.102       0      0       0.0       0.0
** Compaction Stats [state] **
Priority    Files   Size     Score Read(GB)  Rn(GB) Rnp1(GB) Write(GB) Wnew(GB) Moved(GB) W-Amp Rd(MB/s) Wr(MB/s) Comp(sec) CompMergeCPU(sec) Comp(cnt) Avg(sec) KeyIn KeyDrop Rblob(GB) Wblob(GB)
High      0/0    0.00 KB   0.0      0.0     0.0      0.0       0.0      0.0       0.0   0.0      0.0     22.1      0.10              0.06         1    0.102       0      0       0.0       0.0
Uptime(secs): 0.8 total, 0.7 interval
Flush(GB): cumulative 0.302, interval 0.002
";

    #[test]
    fn reads_the_levels_and_the_flush_volume() {
        let (rows, flush) = parse(TEXT);
        let levels: Vec<&str> = rows.iter().map(|r| r.level.as_str()).collect();
        assert_eq!(levels, ["L0", "L1", "Sum"]);
        let l0 = &rows[0];
        assert_eq!(l0.files, "2/0");
        assert_eq!(l0.size, "4.10 MB");
        assert_eq!((l0.read_gb, l0.write_gb, l0.w_amp), (0.1, 0.3, 1.0));
        assert_eq!((l0.comp_seconds, l0.comp_merge_cpu_seconds), (1.5, 1.25));
        assert_eq!(l0.comp_count, 7);
        assert_eq!((l0.key_in.as_str(), l0.key_drop.as_str()), ("12K", "1K"));
        assert_eq!(flush, Some(0.302));
    }

    /// The property of a live store parses: RocksDB's format matches the parser.
    #[test]
    fn parses_a_live_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(dir.path(), &Default::default()).unwrap();
        let tx = store.begin();
        tx.put_record(super::super::Cf::Messages, b"k", &1u32)
            .unwrap();
        tx.commit().unwrap();
        let handle = store.db.cf_handle("state").unwrap();
        store.db.flush_cf(handle).unwrap();
        let text = store
            .db
            .property_value_cf(handle, "rocksdb.cfstats-no-file-histogram")
            .unwrap()
            .unwrap();
        let (rows, flush) = parse(&text);
        let l0 = rows.iter().find(|r| r.level == "L0").expect("an L0 row");
        assert_eq!(l0.comp_count, 1, "the flush is booked in L0:\n{text}");
        assert!(rows.iter().any(|r| r.level == "Sum"));
        assert!(flush.is_some());
    }
}

//! Progress of long operations (initial load, backfill, replay, rebuild): rows,
//! rate and ETA, on a terminal as one updating line, otherwise as log lines.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    what: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_report: Instant,
    terminal: bool,
}

impl Progress {
    pub(crate) fn new(what: &'static str, total: Option<u64>) -> Self {
        let now = Instant::now();
        Progress {
            what,
            total,
            done: 0,
            started: now,
            last_report: now,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn advance(&mut self, n: u64) {
        self.done += n;
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last_report.elapsed() >= every {
            self.report();
            self.last_report = Instant::now();
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let eta = match self.total {
            Some(total) if rate > 0.0 && total > self.done => {
                format!(", eta {:.0} s", (total - self.done) as f64 / rate)
            }
            _ => String::new(),
        };
        // The planner's estimate is 0 for a table never analyzed, and stale once
        // passed: then it says nothing worth printing.
        let of = self
            .total
            .filter(|total| *total > 0 && *total >= self.done)
            .map(|total| format!(" of ~{total}"))
            .unwrap_or_default();
        format!(
            "{}: {} rows{of}, {:.0} rows/s{eta}",
            self.what, self.done, rate
        )
    }

    fn report(&self) {
        if self.terminal {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r{}\x1b[K", self.line());
            let _ = err.flush();
        } else {
            tracing::info!(operation = self.what, rows = self.done, "{}", self.line());
        }
    }

    pub(crate) fn finish(&mut self) {
        self.report();
        if self.terminal {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(total: Option<u64>, done: u64) -> String {
        let mut progress = Progress::new("initial load", total);
        progress.done = done;
        progress.line()
    }

    #[test]
    fn an_estimate_of_zero_or_one_already_passed_is_not_printed() {
        assert!(line(Some(0), 1536).starts_with("initial load: 1536 rows, "));
        assert!(line(Some(1000), 1536).starts_with("initial load: 1536 rows, "));
        assert!(line(None, 1536).starts_with("initial load: 1536 rows, "));
        assert!(line(Some(4000), 1536).starts_with("initial load: 1536 rows of ~4000, "));
    }
}

//! A drain's CPU per change by tenth of its progress, shared by the throughput
//! benches: `backlog` counts progress in changes applied (the applying thread's
//! CPU), `e2e` in bytes of the backlog's WAL the daemon applied (the daemon's CPU).
//! Whether the cost climbs with the state as the drain goes on, or steps at one
//! point (a flush, the first compaction).

/// The CPU per change while progress went from tenth `from` to tenth `to`.
#[derive(Clone, Copy, Debug)]
pub struct Stretch {
    pub from: u32,
    pub to: u32,
    pub us_per_change: f64,
}

/// Samples the CPU each time progress passes another tenth. Progress seen in
/// steps over several tenths makes one stretch of them. Changes are taken as
/// spread evenly over the progress.
pub struct Tenths {
    total: u64,
    changes: u64,
    /// Tenths passed so far, and the CPU seconds when they were.
    at: (u32, f64),
    stretches: Vec<Stretch>,
}

impl Tenths {
    /// A drain of `changes` changes over `total` units of progress, starting at
    /// `cpu` seconds.
    pub fn new(total: u64, changes: u64, cpu: f64) -> Tenths {
        Tenths {
            total: total.max(1),
            changes,
            at: (0, cpu),
            stretches: Vec::with_capacity(10),
        }
    }

    /// Progress reached `done` units; `cpu` reads the CPU seconds, only when a
    /// tenth was passed.
    pub fn reached(&mut self, done: u64, cpu: impl FnOnce() -> Option<f64>) {
        let tenths = u32::try_from(done.min(self.total) * 10 / self.total).unwrap_or(10);
        if tenths > self.at.0
            && let Some(cpu) = cpu()
        {
            self.close(tenths, cpu);
        }
    }

    fn close(&mut self, tenths: u32, cpu: f64) {
        let changes = self.changes as f64 * f64::from(tenths - self.at.0) / 10.0;
        self.stretches.push(Stretch {
            from: self.at.0,
            to: tenths,
            us_per_change: (cpu - self.at.1) / changes * 1e6,
        });
        self.at = (tenths, cpu);
    }

    /// The stretches, the last one closed at the end of the drain (`cpu`: the CPU
    /// seconds then).
    pub fn finish(mut self, cpu: f64) -> Vec<Stretch> {
        if self.at.0 < 10 && cpu.is_finite() {
            self.close(10, cpu);
        }
        self.stretches
    }
}

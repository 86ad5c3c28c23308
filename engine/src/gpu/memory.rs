//! The GPU memory accountant. Every buffer is created through the context's allocator, which reports here, so
//! live bytes per category, the peak and the full alloc/free trajectory are known without asking the driver.

use super::Phase;
use serde::Serialize;

/// What a buffer holds; peaks and ceilings are reported per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Weights,
    Kv,
    Scratch,
    Lora,
    Optimizer,
    Staging,
    /// Uniform buffers owned by bind-group cache entries, and anything not listed above.
    Other,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Weights,
        Category::Kv,
        Category::Scratch,
        Category::Lora,
        Category::Optimizer,
        Category::Staging,
        Category::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Weights => "weights",
            Category::Kv => "kv",
            Category::Scratch => "scratch",
            Category::Lora => "lora",
            Category::Optimizer => "optimizer",
            Category::Staging => "staging",
            Category::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemEventKind {
    Alloc,
    Free,
}

/// One row of the trajectory.
#[derive(Debug, Clone, Serialize)]
pub struct MemEvent {
    pub index: u64,
    pub time_s: f64,
    pub kind: MemEventKind,
    pub label: String,
    pub category: Category,
    pub bytes: u64,
    /// Tracked bytes live after this event, all categories together.
    pub total_bytes: u64,
    pub phase: Phase,
}

/// Live and peak bytes at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemorySnapshot {
    pub live_bytes: u64,
    pub live_buffers: u64,
    pub peak_bytes: u64,
    /// (category, live bytes, peak bytes) for every category.
    pub by_category: Vec<(Category, u64, u64)>,
    /// (phase, peak of the total while that phase was marked) for every phase entered.
    pub peak_by_phase: Vec<(Phase, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct Accountant {
    live_bytes: [u64; Category::ALL.len()],
    peak_bytes: [u64; Category::ALL.len()],
    live_buffers: u64,
    total_bytes: u64,
    peak_total_bytes: u64,
    peak_by_phase: [Option<u64>; Phase::ALL.len()],
    events: Vec<MemEvent>,
}

impl Accountant {
    pub(crate) fn record(&mut self, kind: MemEventKind, label: &str, category: Category, bytes: u64, phase: Phase, time_s: f64) {
        let c = category.index();
        match kind {
            MemEventKind::Alloc => {
                self.live_bytes[c] += bytes;
                self.peak_bytes[c] = self.peak_bytes[c].max(self.live_bytes[c]);
                self.live_buffers += 1;
                self.total_bytes += bytes;
                self.peak_total_bytes = self.peak_total_bytes.max(self.total_bytes);
            }
            MemEventKind::Free => {
                // A free always matches an earlier alloc of the same buffer, so these never underflow.
                self.live_bytes[c] -= bytes;
                self.live_buffers -= 1;
                self.total_bytes -= bytes;
            }
        }
        self.note_phase_peak(phase);
        self.events.push(MemEvent {
            index: self.events.len() as u64,
            time_s,
            kind,
            label: label.to_owned(),
            category,
            bytes,
            total_bytes: self.total_bytes,
            phase,
        });
    }

    /// A phase's peak includes what was already live when it began.
    pub(crate) fn note_phase_peak(&mut self, phase: Phase) {
        let slot = &mut self.peak_by_phase[phase.index()];
        *slot = Some(slot.unwrap_or(0).max(self.total_bytes));
    }

    pub(crate) fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot {
            live_bytes: self.total_bytes,
            live_buffers: self.live_buffers,
            peak_bytes: self.peak_total_bytes,
            by_category: Category::ALL.iter().map(|&c| (c, self.live_bytes[c.index()], self.peak_bytes[c.index()])).collect(),
            peak_by_phase: Phase::ALL
                .iter()
                .filter_map(|&p| self.peak_by_phase[p.index()].map(|peak| (p, peak)))
                .collect(),
        }
    }

    pub(crate) fn events(&self) -> &[MemEvent] {
        &self.events
    }

    /// The trajectory as CSV: one row per alloc or free.
    pub(crate) fn write_csv<W: std::io::Write>(&self, out: W) -> csv::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(["event", "time_s", "kind", "label", "category", "bytes", "total_bytes", "phase"])?;
        for e in &self.events {
            writer.write_record([
                e.index.to_string(),
                format!("{:.6}", e.time_s),
                match e.kind {
                    MemEventKind::Alloc => "alloc".to_owned(),
                    MemEventKind::Free => "free".to_owned(),
                },
                e.label.clone(),
                e.category.name().to_owned(),
                e.bytes.to_string(),
                e.total_bytes.to_string(),
                e.phase.name().to_owned(),
            ])?;
        }
        writer.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_and_phases_follow_allocations() {
        let mut a = Accountant::default();
        a.record(MemEventKind::Alloc, "w", Category::Weights, 100, Phase::Load, 0.0);
        a.record(MemEventKind::Alloc, "kv", Category::Kv, 50, Phase::Prefill, 0.1);
        a.record(MemEventKind::Free, "kv", Category::Kv, 50, Phase::Decode, 0.2);
        let s = a.snapshot();
        assert_eq!((s.live_bytes, s.live_buffers, s.peak_bytes), (100, 1, 150));
        assert_eq!(s.by_category[Category::Kv.index()], (Category::Kv, 0, 50));
        assert_eq!(s.peak_by_phase, vec![(Phase::Load, 100), (Phase::Prefill, 150), (Phase::Decode, 100)]);
        let mut csv = Vec::new();
        a.write_csv(&mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().nth(3).unwrap().ends_with(",free,kv,kv,50,100,decode"), "{text}");
    }
}

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
    /// (phase, (category, peak of that category while the phase was marked) for every category) for every phase
    /// entered.
    pub peak_by_phase_category: Vec<(Phase, Vec<(Category, u64)>)>,
    /// The device profile's ceiling the accountant enforces, if any.
    pub ceiling_bytes: Option<u64>,
}

/// When a phase was entered (seconds on the context's clock), for plotting phases that allocate nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhaseMark {
    pub time_s: f64,
    pub phase: Phase,
}

/// The first allocation that crossed the ceiling: refused when it went through the allocator, recorded after the
/// fact for the few buffers made outside it (bind-group uniforms, timestamp query slabs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CeilingBreach {
    pub profile: String,
    pub phase: Phase,
    pub label: String,
    pub category: Category,
    pub bytes: u64,
    /// Tracked bytes live before this allocation.
    pub live_bytes: u64,
    pub ceiling_bytes: u64,
    pub refused: bool,
}

impl std::fmt::Display for CeilingBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let after = self.live_bytes + self.bytes;
        write!(
            f,
            "during {}, allocating `{}` ({}, {} bytes) {} tracked GPU memory from {} to {} bytes ({}), over the \
             {}-byte ({}) ceiling of device profile `{}`; use a shorter context, a smaller quant, or a profile with a \
             higher ceiling",
            self.phase.name(),
            self.label,
            self.category.name(),
            self.bytes,
            if self.refused { "was refused: it would bring" } else { "brought" },
            self.live_bytes,
            after,
            human_bytes(after),
            self.ceiling_bytes,
            human_bytes(self.ceiling_bytes),
            self.profile,
        )
    }
}

/// `bytes` in the largest binary unit that keeps it ≥ 1, two decimals: `1.50 GiB`, `12.00 KiB`, `7 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{value:.2} {u}"),
        None => format!("{bytes} bytes"),
    }
}

#[derive(Debug, Default)]
pub(crate) struct Accountant {
    live_bytes: [u64; Category::ALL.len()],
    peak_bytes: [u64; Category::ALL.len()],
    live_buffers: u64,
    total_bytes: u64,
    peak_total_bytes: u64,
    peak_by_phase: [Option<u64>; Phase::ALL.len()],
    peak_by_phase_category: [[u64; Category::ALL.len()]; Phase::ALL.len()],
    events: Vec<MemEvent>,
    phase_marks: Vec<PhaseMark>,
    /// (bytes, profile name).
    ceiling: Option<(u64, String)>,
    breach: Option<CeilingBreach>,
}

impl Accountant {
    pub(crate) fn with_ceiling(ceiling: Option<(u64, String)>) -> Self {
        Accountant { ceiling, ..Accountant::default() }
    }

    /// Refuses (and remembers, if it is the first) an allocation that would cross the ceiling.
    pub(crate) fn admit(
        &mut self,
        label: &str,
        category: Category,
        bytes: u64,
        phase: Phase,
    ) -> Result<(), CeilingBreach> {
        match self.breach_by(label, category, bytes, phase, true) {
            Some(breach) => {
                self.breach.get_or_insert_with(|| breach.clone());
                Err(breach)
            }
            None => Ok(()),
        }
    }

    fn breach_by(
        &self,
        label: &str,
        category: Category,
        bytes: u64,
        phase: Phase,
        refused: bool,
    ) -> Option<CeilingBreach> {
        let (ceiling_bytes, profile) = self.ceiling.as_ref()?;
        (self.total_bytes + bytes > *ceiling_bytes).then(|| CeilingBreach {
            profile: profile.clone(),
            phase,
            label: label.to_owned(),
            category,
            bytes,
            live_bytes: self.total_bytes,
            ceiling_bytes: *ceiling_bytes,
            refused,
        })
    }

    pub(crate) fn breach(&self) -> Option<&CeilingBreach> {
        self.breach.as_ref()
    }

    pub(crate) fn record(
        &mut self,
        kind: MemEventKind,
        label: &str,
        category: Category,
        bytes: u64,
        phase: Phase,
        time_s: f64,
    ) {
        let c = category.index();
        match kind {
            MemEventKind::Alloc => {
                if self.breach.is_none() {
                    self.breach = self.breach_by(label, category, bytes, phase, false);
                }
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
        let by_category = &mut self.peak_by_phase_category[phase.index()];
        for (peak, live) in by_category.iter_mut().zip(self.live_bytes) {
            *peak = (*peak).max(live);
        }
    }

    /// Marks the moment `phase` was entered (and counts what is live towards its peaks).
    pub(crate) fn enter_phase(&mut self, phase: Phase, time_s: f64) {
        self.note_phase_peak(phase);
        if self.phase_marks.last().is_none_or(|m| m.phase != phase) {
            self.phase_marks.push(PhaseMark { time_s, phase });
        }
    }

    pub(crate) fn phase_marks(&self) -> &[PhaseMark] {
        &self.phase_marks
    }

    pub(crate) fn snapshot(&self) -> MemorySnapshot {
        let entered: Vec<Phase> = Phase::ALL.into_iter().filter(|p| self.peak_by_phase[p.index()].is_some()).collect();
        MemorySnapshot {
            live_bytes: self.total_bytes,
            live_buffers: self.live_buffers,
            peak_bytes: self.peak_total_bytes,
            by_category: Category::ALL
                .iter()
                .map(|&c| (c, self.live_bytes[c.index()], self.peak_bytes[c.index()]))
                .collect(),
            peak_by_phase: entered.iter().map(|&p| (p, self.peak_by_phase[p.index()].unwrap_or(0))).collect(),
            peak_by_phase_category: entered
                .iter()
                .map(|&p| {
                    let peaks = &self.peak_by_phase_category[p.index()];
                    (p, Category::ALL.iter().map(|&c| (c, peaks[c.index()])).collect())
                })
                .collect(),
            ceiling_bytes: self.ceiling.as_ref().map(|(bytes, _)| *bytes),
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
        let prefill = &s.peak_by_phase_category[1];
        assert_eq!(
            (prefill.0, prefill.1[Category::Weights.index()].1, prefill.1[Category::Kv.index()].1),
            (Phase::Prefill, 100, 50)
        );
        assert_eq!(s.peak_by_phase_category[2].1[Category::Kv.index()].1, 0, "decode began after the kv free");
        let mut csv = Vec::new();
        a.write_csv(&mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().nth(3).unwrap().ends_with(",free,kv,kv,50,100,decode"), "{text}");
    }

    #[test]
    fn the_ceiling_refuses_the_allocation_that_crosses_it_and_remembers_the_first() {
        let mut a = Accountant::with_ceiling(Some((1000, "phone".into())));
        a.record(MemEventKind::Alloc, "w", Category::Weights, 900, Phase::Load, 0.0);
        assert!(a.admit("small", Category::Scratch, 100, Phase::Load).is_ok());
        let breach = a.admit("kv", Category::Kv, 101, Phase::Load).unwrap_err();
        assert_eq!((breach.live_bytes, breach.bytes, breach.ceiling_bytes, breach.refused), (900, 101, 1000, true));
        let message = breach.to_string();
        assert!(message.contains("`kv`") && message.contains("load") && message.contains("`phone`"), "{message}");
        a.admit("later", Category::Kv, 500, Phase::Decode).unwrap_err();
        assert_eq!(a.breach().map(|b| b.label.as_str()), Some("kv"), "the first breach is the one reported");

        let mut unchecked = Accountant::with_ceiling(Some((10, "tiny".into())));
        unchecked.record(MemEventKind::Alloc, "bind-group uniform", Category::Other, 16, Phase::Decode, 0.0);
        let breach = unchecked.breach().unwrap();
        assert!(!breach.refused && breach.phase == Phase::Decode, "{breach:?}");
    }

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(human_bytes(7), "7 bytes");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(2_250_000_000), "2.10 GiB");
    }
}

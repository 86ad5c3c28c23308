//! trajectory.svg, written as text: live tracked bytes by category over time as a stacked step area, the phases
//! as background bands labelled above the plot, the ceiling as a dashed line (or a note when it is far off the
//! scale), axes in seconds and KiB/MiB/GiB, and a legend.

use crate::plot::{escape, tick_step};
use ferrogem::gpu::{Category, MemEvent, MemEventKind, Phase, PhaseMark, human_bytes};
use std::fmt::Write;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 560.0;
/// The plot area.
const LEFT: f64 = 90.0;
const RIGHT: f64 = 770.0;
const TOP: f64 = 90.0;
const BOTTOM: f64 = 490.0;
/// Bottom to top.
const STACK: [Category; 7] = [
    Category::Weights,
    Category::Kv,
    Category::Scratch,
    Category::Staging,
    Category::Lora,
    Category::Optimizer,
    Category::Other,
];
/// A ceiling more than this many times the peak is noted, not drawn (the data would be a flat line).
const MAX_CEILING_OVER_PEAK: f64 = 4.0;

fn category_color(c: Category) -> &'static str {
    match c {
        Category::Weights => "#4e79a7",
        Category::Kv => "#f28e2b",
        Category::Scratch => "#59a14f",
        Category::Staging => "#b07aa1",
        Category::Lora => "#edc948",
        Category::Optimizer => "#ff9da7",
        Category::Other => "#9c755f",
    }
}

fn phase_color(p: Phase) -> &'static str {
    match p {
        Phase::Idle => "#eeeeee",
        Phase::Load => "#fbe3c8",
        Phase::Prefill => "#d3e4f5",
        Phase::Decode => "#dcefd2",
        Phase::Train => "#f1d6ee",
    }
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub profile: Option<&'a str>,
    pub events: &'a [MemEvent],
    pub phases: &'a [PhaseMark],
    pub end_s: f64,
    pub ceiling_bytes: Option<u64>,
}

/// Live bytes of each category (in `STACK` order) from a moment on.
#[derive(Clone, Copy)]
struct Point {
    time_s: f64,
    live: [u64; 7],
}

impl Point {
    fn total(&self) -> u64 {
        self.live.iter().sum()
    }
}

fn unit_of(max_bytes: f64) -> (f64, &'static str) {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if max_bytes >= GIB {
        (GIB, "GiB")
    } else if max_bytes >= MIB {
        (MIB, "MiB")
    } else {
        (1024.0, "KiB")
    }
}

impl Chart<'_> {
    /// The step function of live bytes, keeping of each run of events inside one pixel column only its first,
    /// highest and last state (the file stays small; no peak disappears).
    fn points(&self, x_of: impl Fn(f64) -> f64) -> Vec<Point> {
        let mut all = vec![Point { time_s: 0.0, live: [0; 7] }];
        let mut live = [0u64; 7];
        for e in self.events {
            let i = STACK.iter().position(|c| *c == e.category).unwrap_or(6);
            all.push(Point { time_s: e.time_s, live });
            match e.kind {
                MemEventKind::Alloc => live[i] += e.bytes,
                MemEventKind::Free => live[i] = live[i].saturating_sub(e.bytes),
            }
            all.push(Point { time_s: e.time_s, live });
        }
        all.push(Point { time_s: self.end_s.max(all.last().map_or(0.0, |p| p.time_s)), live });
        let column = |p: &Point| (x_of(p.time_s) * 2.0).round() as i64;
        let mut kept = Vec::with_capacity(all.len());
        for run in all.chunk_by(|a, b| column(a) == column(b)) {
            let highest = run.iter().enumerate().max_by_key(|(_, p)| p.total()).map_or(0, |(i, _)| i);
            let mut keep = vec![0, highest, run.len() - 1];
            keep.sort_unstable();
            keep.dedup();
            kept.extend(keep.into_iter().map(|i| run[i]));
        }
        kept
    }

    pub fn render(&self) -> String {
        let end_s = self.end_s.max(self.events.last().map_or(0.0, |e| e.time_s)).max(1e-3);
        let x_of = |t: f64| LEFT + (t / end_s) * (RIGHT - LEFT);
        let points = self.points(x_of);
        let peak = points.iter().map(Point::total).max().unwrap_or(0) as f64;
        let drawn_ceiling =
            self.ceiling_bytes.map(|c| c as f64).filter(|&c| peak > 0.0 && c <= MAX_CEILING_OVER_PEAK * peak);
        let y_max = match (drawn_ceiling, self.ceiling_bytes) {
            (Some(c), _) => peak.max(c) * 1.08,
            (None, _) if peak > 0.0 => peak * 1.12,
            (None, Some(c)) => c as f64 * 1.08,
            (None, None) => (1u64 << 20) as f64,
        };
        let y_of = |bytes: f64| BOTTOM - bytes / y_max * (BOTTOM - TOP);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"##,
            escape(self.title)
        );
        let ceiling_text = match self.ceiling_bytes {
            Some(c) => format!("ceiling {} ({c} bytes)", human_bytes(c)),
            None => "no ceiling".into(),
        };
        let subtitle = format!(
            "peak {} ({} bytes) · profile {} · {ceiling_text}",
            human_bytes(peak as u64),
            peak as u64,
            self.profile.unwrap_or("none (adapter limits)")
        );
        let _ = writeln!(svg, r##"<text x="{LEFT}" y="44" fill="#444">{}</text>"##, escape(&subtitle));

        let bands = self.phase_bands(end_s);
        for &(start, end, phase) in &bands {
            let (x0, x1) = (x_of(start), x_of(end));
            let _ = writeln!(
                svg,
                r##"<rect x="{x0:.2}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{}"/>"##,
                TOP - 22.0,
                (x1 - x0).max(0.5),
                BOTTOM - TOP + 22.0,
                phase_color(phase)
            );
            if x1 - x0 >= 44.0 {
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
                    (x0 + x1) / 2.0,
                    TOP - 7.0,
                    phase.name()
                );
            }
        }
        self.grid_and_axes(&mut svg, end_s, y_max, x_of, y_of);

        let mut lower = vec![0u64; points.len()];
        for (i, &category) in STACK.iter().enumerate() {
            if points.iter().all(|p| p.live[i] == 0) {
                continue;
            }
            let upper: Vec<u64> = points.iter().zip(&lower).map(|(p, low)| low + p.live[i]).collect();
            let mut path = String::new();
            for (p, &u) in points.iter().zip(&upper) {
                let _ = write!(path, "{:.2},{:.2} ", x_of(p.time_s), y_of(u as f64));
            }
            for (p, &l) in points.iter().zip(&lower).rev() {
                let _ = write!(path, "{:.2},{:.2} ", x_of(p.time_s), y_of(l as f64));
            }
            let _ = writeln!(
                svg,
                r##"<polygon points="{}" fill="{}" stroke="none"/>"##,
                path.trim_end(),
                category_color(category)
            );
            lower = upper;
        }
        if let Some(c) = drawn_ceiling {
            let y = y_of(c);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.2}" x2="{RIGHT}" y2="{y:.2}" stroke="#d62728" stroke-width="2" stroke-dasharray="8 5"/>"##
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.2}" text-anchor="end" fill="#d62728">ceiling {}</text>"##,
                RIGHT - 4.0,
                y - 5.0,
                human_bytes(c as u64)
            );
        } else if let Some(c) = self.ceiling_bytes {
            let note =
                format!("ceiling {} is {:.0}× the peak: off the scale", human_bytes(c), c as f64 / peak.max(1.0));
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#d62728">{}</text>"##,
                RIGHT - 4.0,
                TOP + 14.0,
                escape(&note)
            );
        }
        self.legend(&mut svg, &points, &bands, drawn_ceiling.is_some());
        svg.push_str("</svg>\n");
        svg
    }

    /// (start, end, phase) intervals, merged; the time before the first mark is idle.
    fn phase_bands(&self, end_s: f64) -> Vec<(f64, f64, Phase)> {
        let mut marks = vec![PhaseMark { time_s: 0.0, phase: Phase::Idle }];
        marks.extend(self.phases.iter().copied());
        let mut bands: Vec<(f64, f64, Phase)> = Vec::new();
        for (i, m) in marks.iter().enumerate() {
            let end = marks.get(i + 1).map_or(end_s, |n| n.time_s).min(end_s);
            match bands.last_mut() {
                Some(last) if last.2 == m.phase => last.1 = end,
                _ => bands.push((m.time_s, end, m.phase)),
            }
        }
        bands.retain(|(start, end, _)| end > start);
        bands
    }

    fn grid_and_axes(
        &self,
        svg: &mut String,
        end_s: f64,
        y_max: f64,
        x_of: impl Fn(f64) -> f64,
        y_of: impl Fn(f64) -> f64,
    ) {
        let (unit, unit_name) = unit_of(y_max);
        let (step, decimals) = tick_step(y_max / unit, 6.0);
        let mut v = 0.0;
        while v * unit <= y_max {
            let y = y_of(v * unit);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.2}" x2="{RIGHT}" y2="{y:.2}" stroke="#ffffff" stroke-opacity="0.8"/>"##
            );
            let _ =
                writeln!(svg, r##"<line x1="{:.1}" y1="{y:.2}" x2="{LEFT}" y2="{y:.2}" stroke="#333"/>"##, LEFT - 5.0);
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.2}" text-anchor="end">{v:.decimals$}</text>"##,
                LEFT - 8.0,
                y + 4.0
            );
            v += step;
        }
        let (step, decimals) = tick_step(end_s, 8.0);
        let mut t = 0.0;
        while t <= end_s * 1.0001 {
            let x = x_of(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.2}" y1="{BOTTOM}" x2="{x:.2}" y2="{:.1}" stroke="#333"/>"##,
                BOTTOM + 5.0
            );
            let _ = writeln!(
                svg,
                r##"<text x="{x:.2}" y="{:.1}" text-anchor="middle">{t:.decimals$}</text>"##,
                BOTTOM + 19.0
            );
            t += step;
        }
        let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#333"/>"##);
        let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333"/>"##);
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the GPU context was created (s)</text>"##,
            (LEFT + RIGHT) / 2.0,
            BOTTOM + 40.0
        );
        let _ = writeln!(
            svg,
            r##"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">live tracked GPU memory ({unit_name})</text>"##,
            LEFT - 58.0,
            (TOP + BOTTOM) / 2.0
        );
    }

    fn legend(&self, svg: &mut String, points: &[Point], bands: &[(f64, f64, Phase)], ceiling_drawn: bool) {
        let x = RIGHT + 24.0;
        let mut y = TOP;
        let _ = writeln!(svg, r##"<text x="{x}" y="{y}" font-weight="bold">memory (peak)</text>"##);
        for (i, &category) in STACK.iter().enumerate().rev() {
            let peak = points.iter().map(|p| p.live[i]).max().unwrap_or(0);
            if peak == 0 {
                continue;
            }
            y += 20.0;
            let _ = writeln!(
                svg,
                r##"<rect x="{x}" y="{:.1}" width="14" height="14" fill="{}"/>"##,
                y - 11.0,
                category_color(category)
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{y:.1}">{} ({})</text>"##,
                x + 20.0,
                category.name(),
                human_bytes(peak)
            );
        }
        y += 32.0;
        let _ = writeln!(svg, r##"<text x="{x}" y="{y}" font-weight="bold">phase</text>"##);
        let mut seen: Vec<Phase> = Vec::new();
        for &(_, _, phase) in bands {
            if seen.contains(&phase) {
                continue;
            }
            seen.push(phase);
            y += 20.0;
            let _ = writeln!(
                svg,
                r##"<rect x="{x}" y="{:.1}" width="14" height="14" fill="{}" stroke="#999"/>"##,
                y - 11.0,
                phase_color(phase)
            );
            let _ = writeln!(svg, r##"<text x="{:.1}" y="{y:.1}">{}</text>"##, x + 20.0, phase.name());
        }
        if ceiling_drawn {
            y += 32.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d62728" stroke-width="2" stroke-dasharray="8 5"/>"##,
                y - 4.0,
                x + 14.0,
                y - 4.0
            );
            let _ = writeln!(svg, r##"<text x="{:.1}" y="{y:.1}">ceiling</text>"##, x + 20.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        index: u64,
        time_s: f64,
        kind: MemEventKind,
        category: Category,
        bytes: u64,
        total_bytes: u64,
        phase: Phase,
    ) -> MemEvent {
        MemEvent { index, time_s, kind, label: format!("e{index}"), category, bytes, total_bytes, phase }
    }

    #[test]
    fn units_are_binary() {
        assert_eq!(unit_of(3.0 * (1u64 << 30) as f64).1, "GiB");
    }

    #[test]
    fn the_chart_stacks_categories_and_draws_the_ceiling_and_phases() {
        let mib = 1u64 << 20;
        let events = [
            event(0, 0.1, MemEventKind::Alloc, Category::Weights, 3 * mib, 3 * mib, Phase::Load),
            event(1, 0.2, MemEventKind::Alloc, Category::Kv, mib, 4 * mib, Phase::Load),
            event(2, 0.9, MemEventKind::Free, Category::Kv, mib, 3 * mib, Phase::Idle),
            event(3, 1.0, MemEventKind::Free, Category::Weights, 3 * mib, 0, Phase::Idle),
        ];
        let phases = [
            PhaseMark { time_s: 0.05, phase: Phase::Load },
            PhaseMark { time_s: 0.3, phase: Phase::Prefill },
            PhaseMark { time_s: 0.5, phase: Phase::Decode },
            PhaseMark { time_s: 0.8, phase: Phase::Idle },
        ];
        let chart = Chart {
            title: "a <tiny> model",
            profile: Some("test"),
            events: &events,
            phases: &phases,
            end_s: 1.0,
            ceiling_bytes: Some(5 * mib),
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polygon").count(), 2, "weights and kv");
        assert!(svg.contains(category_color(Category::Kv)) && svg.contains("stroke-dasharray"), "the ceiling line");
        for phase in ["load", "prefill", "decode"] {
            assert!(svg.contains(&format!(">{phase}</text>")), "{phase} band labelled");
        }
        assert!(svg.contains("(MiB)") && svg.contains("a &lt;tiny&gt; model") && svg.contains("peak 4.00 MiB"));
        let far = Chart { ceiling_bytes: Some(1 << 40), ..chart };
        assert!(far.render().contains("off the scale"));
    }
}

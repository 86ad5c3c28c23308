//! One line chart as inline SVG: labelled slots on the x axis (runs in commit order, training steps), one line per
//! series, a y axis from zero with round ticks. No scripts: tooltips are SVG `<title>` elements.

use super::{escape, tick_step};
use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 70.0;
/// Distinguishable on white (the Okabe–Ito palette).
pub const COLORS: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

/// One point: x index into the chart's run labels, the value, and its tooltip.
pub struct Point {
    pub x: usize,
    pub y: f64,
    pub tooltip: String,
}

pub struct Series {
    pub color: &'static str,
    pub points: Vec<Point>,
}

/// The chart; `x_labels` name the slots (short commits, steps), `format` writes a y value.
pub fn line_chart(id: &str, x_labels: &[String], series: &[Series], format: &dyn Fn(f64) -> String) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="plot" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">"#
    );
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    let max_y = series.iter().flat_map(|s| s.points.iter().map(|p| p.y)).fold(0.0f64, f64::max);
    if series.iter().all(|s| s.points.is_empty()) {
        let _ = write!(
            svg,
            r##"<text class="no-data" x="{}" y="{}" text-anchor="middle" fill="#888">no data</text></svg>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
        return svg;
    }
    let step = tick_step(if max_y > 0.0 { max_y } else { 1.0 }, 5.0).0;
    let top_y = (max_y / step).ceil().max(1.0) * step;
    let y_px = |y: f64| TOP + plot_h * (1.0 - y / top_y);
    let slots = x_labels.len().max(1) as f64;
    let x_px = |x: usize| LEFT + plot_w * (x as f64 + 0.5) / slots;
    let mut tick = 0.0;
    while tick <= top_y * (1.0 + 1e-9) {
        let y = y_px(tick);
        let (right, label_x, label_y) = (LEFT + plot_w, LEFT - 6.0, y + 4.0);
        let _ = write!(svg, r##"<line x1="{LEFT}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##);
        let label = escape(&format(tick));
        let _ = write!(svg, r#"<text x="{label_x}" y="{label_y:.1}" text-anchor="end" font-size="11">{label}</text>"#);
        tick += step;
    }
    // Label at most ~24 slots so the labels stay legible.
    let every = x_labels.len().div_ceil(24).max(1);
    for (i, label) in x_labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let (x, y) = (x_px(i), TOP + plot_h + 10.0);
        let rotate = format!("rotate(-40 {x:.1} {y:.1})");
        let label = escape(label);
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="10" text-anchor="end" transform="{rotate}">{label}</text>"#
        );
    }
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let coords: Vec<String> = s.points.iter().map(|p| format!("{:.1},{:.1}", x_px(p.x), y_px(p.y))).collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            coords.join(" ")
        );
        for p in &s.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}</title></circle>"#,
                x_px(p.x),
                y_px(p.y),
                s.color,
                escape(&p.tooltip)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_without_points_says_no_data() {
        let svg = line_chart("c", &[], &[Series { color: COLORS[0], points: Vec::new() }], &|y| y.to_string());
        assert!(svg.contains("no data") && !svg.contains("<polyline"));
    }
}

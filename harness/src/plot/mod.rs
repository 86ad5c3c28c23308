//! What the hand-written SVG plots (`profile`'s trajectory, `report`'s dashboard, the loss curve) share, and the
//! charts more than one of them draws.

pub mod line_chart;
pub mod loss;

/// Text safe inside SVG/HTML elements and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A 1-2-2.5-5 × 10^k step giving about `count` ticks over `range`, and the decimals its labels need.
pub fn tick_step(range: f64, count: f64) -> (f64, usize) {
    let raw = (range / count).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let decimals = (0..6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-9
        })
        .unwrap_or(6) as usize;
    (step, decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_labels_carry_the_decimals_they_need() {
        assert_eq!(tick_step(10.0, 5.0), (2.0, 0));
        assert_eq!(tick_step(1.0, 4.0), (0.25, 2));
        assert_eq!(tick_step(100.0, 5.0).0, 20.0);
        assert_eq!(tick_step(3300.0, 5.0).0, 1000.0);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}

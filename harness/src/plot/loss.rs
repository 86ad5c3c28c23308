//! The loss curve of a training run (`finetune`'s loss.svg, the page's training tab): train and eval loss against
//! the step, one line each, as a standalone SVG file.

use super::line_chart::{COLORS, Point, Series, line_chart};

/// `train` holds (step, loss before that step's update); `eval` (step, loss after that many steps).
pub fn loss_svg(train: &[(u32, f64)], eval: &[(u32, f64)]) -> String {
    let last = train.iter().chain(eval).map(|(step, _)| *step).max().unwrap_or(0);
    let labels: Vec<String> = (0..=last).map(|s| s.to_string()).collect();
    let series: Vec<Series> = [("train", train, COLORS[0]), ("eval", eval, COLORS[1])]
        .into_iter()
        .map(|(split, rows, color)| Series {
            color,
            points: rows
                .iter()
                .map(|&(step, loss)| Point {
                    x: step as usize,
                    y: loss,
                    tooltip: format!("{split} step {step}: {loss:.4}"),
                })
                .collect(),
        })
        .collect();
    let chart = line_chart("loss", &labels, &series, &|y| format!("{y:.2}"));
    // A file of its own needs the namespace that inline SVG in HTML does without.
    chart.replacen("<svg ", r#"<svg xmlns="http://www.w3.org/2000/svg" "#, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_split_with_a_point_per_step() {
        let svg = loss_svg(&[(1, 2.5), (2, 1.25), (3, 0.5)], &[(3, 0.75)]);
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" "#));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("train step 2: 1.2500") && svg.contains("eval step 3: 0.7500"));
    }
}

//! `ferrogem report`: the benchmark dashboard. Reads one or more CSV histories written by `ferrogem bench` and
//! writes one self-contained HTML file: a line chart per metric (prefill and decode tok/s, tracked memory peak,
//! decode bind-group hit rate) over the runs in date order, one line per adapter+model, and a table of each
//! series' latest run. Inline SVG and CSS only, nothing fetched. A column a history does not have is shown as
//! "no data".

use crate::bench::history::{self, Record, col};
use clap::Args;
use ferrogem::atomic_file::write_atomic;
use ferrogem_harness::plot::escape;
use ferrogem_harness::plot::line_chart::{COLORS, Point, Series, line_chart};
use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ReportArgs {
    /// A CSV history from `ferrogem bench --csv` (repeatable).
    #[arg(long = "history", required = true)]
    pub histories: Vec<PathBuf>,
    /// Where to write the HTML.
    #[arg(long)]
    pub out: PathBuf,
}

/// A plotted metric: its column, title, and how a value is written.
struct Metric {
    column: &'static str,
    title: &'static str,
    format: fn(f64) -> String,
}

/// Three significant digits at most below 100, without trailing zeros (`50`, `2.5`, `0.25`).
fn decimal(y: f64) -> String {
    let decimals = if y.abs() >= 100.0 {
        0
    } else if y.abs() >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{y:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

fn mebibytes(y: f64) -> String {
    format!("{:.0} MiB", y / (1u64 << 20) as f64)
}

fn percent(y: f64) -> String {
    format!("{:.0}%", 100.0 * y)
}

const METRICS: [Metric; 4] = [
    Metric { column: col::DECODE_TOK_S, title: "Decode tok/s (median over reps)", format: decimal },
    Metric { column: col::PREFILL_TOK_S, title: "Prefill tok/s (median over reps)", format: decimal },
    Metric { column: col::MEMORY_PEAK_BYTES, title: "GPU memory peak (tracked)", format: mebibytes },
    Metric { column: col::BIND_HIT_RATE_DECODE, title: "Bind-group cache hit rate, decode", format: percent },
];

/// Columns of the latest-run table, after the series name.
const TABLE_COLUMNS: [&str; 10] = [
    col::DATE,
    col::COMMIT,
    col::PREFILL_TOK_S,
    col::DECODE_TOK_S,
    "dispatches_per_token",
    "submissions_per_token",
    "read_roofline_pct",
    col::MEMORY_PEAK_BYTES,
    col::BIND_HIT_RATE_DECODE,
    "top_kernel",
];

fn series_key(r: &Record) -> String {
    let get = |c: &str| r.get(c).map_or("?", String::as_str).to_owned();
    format!("{} · {}", get(col::ADAPTER), get(col::MODEL))
}

pub fn run(args: ReportArgs) -> ferrogem::Result<ExitCode> {
    let mut records: Vec<Record> = Vec::new();
    for path in &args.histories {
        let rows = history::read(path).map_err(|e| ferrogem::Error::Io {
            action: "read",
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        records.extend(rows);
    }
    // Stable: runs without a date keep their file order, after the dated ones.
    records.sort_by(|a, b| match (a.get(col::DATE), b.get(col::DATE)) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let html = render(&args, &records);
    write_atomic(&args.out, html.as_bytes())?;
    eprintln!("{} runs from {} file(s) -> {}", records.len(), args.histories.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn render(args: &ReportArgs, records: &[Record]) -> String {
    let mut keys: Vec<String> = Vec::new();
    for r in records {
        let key = series_key(r);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let x_labels: Vec<String> = records
        .iter()
        .map(|r| r.get(col::COMMIT).map_or_else(|| "?".to_owned(), |c| c.chars().take(12).collect()))
        .collect();
    let sources: Vec<String> = args.histories.iter().map(|p| escape(&p.display().to_string())).collect();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ferrogem benchmarks</title>\
         <style>{}</style></head><body>\n",
        STYLE
    );
    let _ = writeln!(
        html,
        "<h1>ferrogem benchmarks</h1><p class=\"meta\">{} runs from {}, in date order.</p>",
        records.len(),
        sources.join(", ")
    );
    let _ = write!(html, "<div class=\"legend\">");
    for (i, key) in keys.iter().enumerate() {
        let _ = write!(html, "<span><i style=\"background:{}\"></i>{}</span>", COLORS[i % COLORS.len()], escape(key));
    }
    let _ = writeln!(html, "</div>");
    for m in &METRICS {
        let series: Vec<Series> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Series {
                color: COLORS[i % COLORS.len()],
                points: records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| series_key(r) == *key)
                    .filter_map(|(x, r)| {
                        let y: f64 = r.get(m.column)?.parse().ok().filter(|y: &f64| y.is_finite())?;
                        let tooltip = format!(
                            "{key}\n{} {}\n{} = {}",
                            x_labels[x],
                            r.get(col::DATE).map_or("", String::as_str),
                            m.column,
                            (m.format)(y)
                        );
                        Some(Point { x, y, tooltip })
                    })
                    .collect(),
            })
            .collect();
        let missing: Vec<&str> =
            keys.iter().zip(&series).filter(|(_, s)| s.points.is_empty()).map(|(k, _)| k.as_str()).collect();
        let _ = write!(html, "<section class=\"chart\" id=\"section-{}\"><h2>{}</h2>", m.column, m.title);
        html.push_str(&line_chart(&format!("chart-{}", m.column), &x_labels, &series, &m.format));
        if !missing.is_empty() && missing.len() < keys.len() {
            let _ = write!(html, "<p class=\"no-data\">no data for {}</p>", escape(&missing.join("; ")));
        }
        html.push_str("</section>\n");
    }
    html.push_str(&latest_table(&keys, records));
    html.push_str("</body></html>\n");
    html
}

/// Each series' latest run, with the headline columns.
fn latest_table(keys: &[String], records: &[Record]) -> String {
    let mut t = String::from("<section><h2>Latest run per series</h2><table id=\"latest\"><tr><th>series</th>");
    for c in TABLE_COLUMNS {
        let _ = write!(t, "<th>{c}</th>");
    }
    t.push_str("</tr>");
    for key in keys {
        let Some(r) = records.iter().rev().find(|r| series_key(r) == *key) else { continue };
        let _ = write!(t, "<tr><td>{}</td>", escape(key));
        for c in TABLE_COLUMNS {
            let _ = write!(
                t,
                "<td>{}</td>",
                r.get(c).map_or_else(|| "<span class=\"no-data\">no data</span>".to_owned(), |v| escape(v))
            );
        }
        t.push_str("</tr>");
    }
    t.push_str("</table></section>\n");
    t
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
h1{font-size:22px}h2{font-size:16px;margin:18px 0 6px}.meta{color:#555}\
.legend span{display:inline-block;margin-right:18px;font-size:13px}\
.legend i{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px}\
.no-data{color:#888;font-style:italic}table{border-collapse:collapse;font-size:12px}\
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}svg text{font-family:system-ui,sans-serif}";

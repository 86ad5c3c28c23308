//! `ferrogem report` renders in a real browser: two small histories in, the HTML opened in headless Chromium, the
//! charts checked in the DOM Chromium built, and a screenshot that must carry more than a blank page does.
//! Chromium is required: without it this test fails and names `ci/setup.sh`, which installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Chromium gets this long per page before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("headless Chromium is not installed (no chromium on PATH); run `bash ci/setup.sh`, which installs it")
    })
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrogem-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `args`, killing it after [`CHROMIUM_TIMEOUT`].
fn run_chromium(profile: &Path, args: &[String], url: &str) -> Output {
    let mut child = Command::new(chromium())
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().expect("poll chromium").is_none() {
        if start.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            panic!("chromium did not finish {url} within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(out.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

const HISTORY_A: &str = "\
commit,date,adapter,model,prefill_tok_s,decode_tok_s,memory_peak_bytes
aaaaaaaaaaaa,2026-11-20T10:00:00Z,NVIDIA H200,e2b-Q4_K_M.gguf,9000.5,210.25,3400000000
bbbbbbbbbbbb,2026-11-21T10:00:00Z,NVIDIA H200,e2b-Q4_K_M.gguf,9500,250.5,3300000000
cccccccccccc,2026-11-22T10:00:00Z,NVIDIA H200,e2b-Q4_K_M.gguf,12000,331,3300000000
bbbbbbbbbbbb,2026-11-21T11:00:00Z,llvmpipe (LLVM 15.0.6 256 bits),tiny-gemma4-f32.gguf,40.5,12.5,9000000
";

/// A second file, from a harness that also wrote the bind-group hit rate, for a third series.
const HISTORY_B: &str = "\
commit,date,adapter,model,prefill_tok_s,decode_tok_s,memory_peak_bytes,bind_hit_rate_decode
dddddddddddd,2026-11-22T12:00:00Z,NVIDIA H100 80GB HBM3,e2b-Q4_K_M.gguf,11000,300,3300000000,0.99
";

/// The rendered `<section>` whose chart has this id.
fn section<'a>(dom: &'a str, chart_id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{chart_id}\"")).unwrap_or_else(|| panic!("no #{chart_id} in the rendered DOM"));
    let start = dom[..at].rfind("<section").expect("chart inside a section");
    let end = dom[at..].find("</section>").map_or(dom.len(), |e| at + e);
    &dom[start..end]
}

#[test]
fn report_renders_its_charts_in_headless_chromium() {
    let dir = scratch_dir("report-render");
    let (a, b, html) = (dir.join("a.csv"), dir.join("b.csv"), dir.join("report.html"));
    std::fs::write(&a, HISTORY_A).unwrap();
    std::fs::write(&b, HISTORY_B).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogem"))
        .args(["report", "--history", a.to_str().unwrap(), "--history", b.to_str().unwrap(), "--out"])
        .arg(&html)
        .output()
        .expect("run ferrogem report");
    assert!(out.status.success(), "ferrogem report failed: {}", String::from_utf8_lossy(&out.stderr));
    let source = std::fs::read_to_string(&html).unwrap();
    assert!(
        !source.contains("<script") && !source.contains("http://") && !source.contains("https://"),
        "the report must be self-contained"
    );

    let url = format!("file://{}", html.display());
    let dom = String::from_utf8(run_chromium(&dir.join("profile"), &["--dump-dom".into()], &url).stdout).unwrap();
    // Three series (H200/e2b, llvmpipe/tiny, H100/e2b); each chart draws one line per series with data.
    for (chart, lines, points) in
        [("chart-decode_tok_s", 3, 5), ("chart-prefill_tok_s", 3, 5), ("chart-memory_peak_bytes", 3, 5)]
    {
        let s = section(&dom, chart);
        assert_eq!(s.matches("<polyline").count(), lines, "{chart}: lines in\n{s}");
        assert_eq!(s.matches("<circle").count(), points, "{chart}: points in\n{s}");
    }
    // Only the H100 run has a hit rate: one line, and the other two series are named as having no data.
    let hits = section(&dom, "chart-bind_hit_rate_decode");
    assert_eq!(hits.matches("<polyline").count(), 1, "{hits}");
    assert!(hits.contains("no data for") && hits.contains("llvmpipe"), "{hits}");
    assert!(section(&dom, "chart-decode_tok_s").contains("331"), "the H200's latest decode value in a tooltip");
    assert!(dom.contains("id=\"latest\""), "the latest-run table");

    // The screenshot of the report must carry far more than one of an empty page of the same size.
    let shot = |name: &str, url: &str| -> Vec<u8> {
        let png = dir.join(name);
        run_chromium(
            &dir.join("profile"),
            &[format!("--screenshot={}", png.display()), "--window-size=1000,1600".into()],
            url,
        );
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
        bytes
    };
    let blank_page = dir.join("blank.html");
    std::fs::write(&blank_page, "<!doctype html><html><body></body></html>").unwrap();
    let (report_png, blank_png) =
        (shot("report.png", &url), shot("blank.png", &format!("file://{}", blank_page.display())));
    assert!(
        report_png.len() > 4 * blank_png.len(),
        "the report screenshot ({} bytes) is not much more than a blank page's ({} bytes)",
        report_png.len(),
        blank_png.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

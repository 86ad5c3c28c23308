//! The benchmark history: one CSV row per `ferrogem bench` run, read back by `ferrogem report`. Columns are found by
//! name, never by position, so files written by older or newer harnesses keep working: appending a row that has
//! columns the file lacks rewrites the file with the union of both headers (old rows get empty cells).

use std::collections::HashMap;
use std::path::Path;

/// Column names shared by the writer (`bench`) and the reader (`report`).
pub mod col {
    pub const COMMIT: &str = "commit";
    pub const DATE: &str = "date";
    pub const ADAPTER: &str = "adapter";
    pub const MODEL: &str = "model";
    pub const PREFILL_TOK_S: &str = "prefill_tok_s";
    pub const DECODE_TOK_S: &str = "decode_tok_s";
    pub const MEMORY_PEAK_BYTES: &str = "memory_peak_bytes";
    pub const BIND_HIT_RATE_DECODE: &str = "bind_hit_rate_decode";
}

/// One run: column name → cell text (empty cells are absent).
pub type Record = HashMap<String, String>;

/// Appends `row` (name, value pairs in column order), creating the file with a header if it does not exist.
pub fn append(path: &Path, row: &[(&str, String)]) -> csv::Result<()> {
    let names: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = csv::Writer::from_path(path)?;
        writer.write_record(&names)?;
        writer.write_record(row.iter().map(|(_, v)| v))?;
        return Ok(writer.flush()?);
    }
    let mut reader = csv::Reader::from_path(path)?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    if header == names {
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        writer.write_record(row.iter().map(|(_, v)| v))?;
        return Ok(writer.flush()?);
    }
    let old_rows: Vec<csv::StringRecord> = reader.records().collect::<csv::Result<_>>()?;
    let mut columns = header.clone();
    columns.extend(names.iter().filter(|n| !header.iter().any(|h| h == *n)).map(|n| n.to_string()));
    let cell = |record: &dyn Fn(&str) -> Option<String>| {
        columns.iter().map(|c| record(c).unwrap_or_default()).collect::<Vec<_>>()
    };
    // Written beside the file and renamed over it, so an interrupted run cannot lose the history.
    let tmp = path.with_extension("csv.tmp");
    let mut writer = csv::Writer::from_path(&tmp)?;
    writer.write_record(&columns)?;
    for old in &old_rows {
        writer
            .write_record(cell(&|c| header.iter().position(|h| h == c).and_then(|i| old.get(i)).map(str::to_owned)))?;
    }
    writer.write_record(cell(&|c| row.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone())))?;
    writer.flush()?;
    drop(writer);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Every row of a history file.
pub fn read(path: &Path) -> csv::Result<Vec<Record>> {
    let mut reader = csv::Reader::from_path(path)?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    reader
        .records()
        .map(|r| {
            let r = r?;
            Ok(header
                .iter()
                .zip(r.iter())
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.to_owned()))
                .collect())
        })
        .collect()
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ` (sorts as text in time order).
pub fn utc_now_iso() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }

    #[test]
    fn appending_new_columns_keeps_old_rows() {
        let dir = std::env::temp_dir().join(format!("ferrogem-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.csv");
        let _ = std::fs::remove_file(&path);
        append(&path, &[("commit", "a".into()), ("decode_tok_s", "1.5".into())]).unwrap();
        append(&path, &[("commit", "b".into()), ("decode_tok_s", "2.5".into())]).unwrap();
        append(&path, &[("commit", "c".into()), ("prefill_tok_s", "9".into()), ("decode_tok_s", "3".into())]).unwrap();
        let rows = read(&path).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].get("decode_tok_s").map(String::as_str), Some("1.5"));
        assert_eq!(rows[0].get("prefill_tok_s"), None);
        assert_eq!(rows[2].get("prefill_tok_s").map(String::as_str), Some("9"));
        let header = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_owned();
        assert_eq!(header, "commit,decode_tok_s,prefill_tok_s");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

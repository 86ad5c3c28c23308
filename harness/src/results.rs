//! Machine-readable results: every row carries the adapter, what it granted, and the commit.

use crate::cases::runner::Row;
use ferrogem::gpu::Capabilities;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub downlevel: bool,
    pub f16: bool,
    pub subgroups: bool,
    pub subgroup_max_size: u32,
    pub timestamps: bool,
    pub max_storage_buffer_binding_bytes: u64,
    pub max_buffer_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub commit: &'static str,
}

impl Environment {
    pub fn new(caps: &Capabilities) -> Self {
        Environment {
            adapter: caps.adapter.name.clone(),
            backend: caps.adapter.backend.clone(),
            device_type: caps.adapter.device_type.clone(),
            driver: caps.adapter.driver.clone(),
            driver_info: caps.adapter.driver_info.clone(),
            downlevel: caps.downlevel,
            f16: caps.f16,
            subgroups: caps.subgroups,
            subgroup_max_size: caps.subgroup_max_size,
            timestamps: caps.timestamps,
            max_storage_buffer_binding_bytes: caps.max_storage_buffer_binding_bytes,
            max_buffer_bytes: caps.max_buffer_bytes,
            max_workgroup_storage_bytes: caps.max_workgroup_storage_bytes,
            max_invocations_per_workgroup: caps.max_invocations_per_workgroup,
            commit: env!("FERROGEM_COMMIT"),
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    environment: &'a Environment,
    read_gb_per_s: Option<f64>,
    rows: &'a [Row],
}

/// The report `check ops --json` writes (and the browser's conformance run downloads).
pub fn json_text(env: &Environment, read_gb_per_s: Option<f64>, rows: &[Row]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&JsonReport { environment: env, read_gb_per_s, rows })
}

pub fn write_json(path: &Path, env: &Environment, read_gb_per_s: Option<f64>, rows: &[Row]) -> std::io::Result<()> {
    std::fs::write(path, json_text(env, read_gb_per_s, rows)?)
}

pub fn write_csv(path: &Path, env: &Environment, rows: &[Row]) -> csv::Result<()> {
    write_rows_csv(csv::Writer::from_path(path)?, env, rows)
}

/// The table `check ops --csv` writes, as text.
pub fn csv_text(env: &Environment, rows: &[Row]) -> csv::Result<String> {
    let mut bytes = Vec::new();
    write_rows_csv(csv::Writer::from_writer(&mut bytes), env, rows)?;
    // Every field went in as a Rust string, so the table is UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One CSV row per case: the row's fields, then the environment's (the csv crate cannot flatten structs).
fn write_rows_csv<W: std::io::Write>(mut writer: csv::Writer<W>, env: &Environment, rows: &[Row]) -> csv::Result<()> {
    let fields = |value: serde_json::Value| -> Vec<(String, String)> {
        let serde_json::Value::Object(map) = value else { return Vec::new() };
        map.into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect()
    };
    let env_fields = fields(serde_json::to_value(env).unwrap_or_default());
    for (i, row) in rows.iter().enumerate() {
        let mut all = fields(serde_json::to_value(row).unwrap_or_default());
        all.extend(env_fields.iter().cloned());
        if i == 0 {
            writer.write_record(all.iter().map(|(k, _)| k))?;
        }
        writer.write_record(all.iter().map(|(_, v)| v))?;
    }
    writer.flush()?;
    Ok(())
}

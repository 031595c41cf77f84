//! One JSON file for every benchmark's figures, so two runs can be compared: each benchmark
//! writes its own section and keeps the others'.
//!
//! The file is `BENCH_JSON` when set, else `bench/bench.json` in cargo's target folder (the
//! parent of the folder the benchmark binary runs from, `target/release/`).

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{Map, Value};

/// Where the figures go.
pub fn file() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_JSON") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let target = exe
        .parent()
        .and_then(|profile| profile.parent())
        .context("the benchmark binary is not in a cargo target folder")?;
    Ok(target.join("bench").join("bench.json"))
}

/// Replaces `section` in the file with `figures` (and when it ran), keeping other sections.
pub fn record(section: &str, figures: Value) -> anyhow::Result<PathBuf> {
    let path = file()?;
    let all = read(&path);
    write(&path, all, section, figures)
}

/// Sets `key` in `section` to `value`, keeping the section's other keys: for figures that
/// separate runs measure one at a time (each fault test its own recovery).
pub fn record_in(section: &str, key: &str, value: Value) -> anyhow::Result<PathBuf> {
    let path = file()?;
    let all = read(&path);
    let mut figures = match all.get(section) {
        Some(Value::Object(object)) => object.clone(),
        _ => Map::new(),
    };
    figures.insert(key.into(), value);
    write(&path, all, section, Value::Object(figures))
}

/// Prints how long the saga took to recover from `fault`, and, when `BENCH_JSON` names the
/// figures' file (`just bench-faults` sets it), records it in its `faults` section in
/// seconds. The fault tests call this; a plain `cargo test` writes no file.
pub fn recovery(fault: &str, description: &str, took: std::time::Duration) {
    println!("recovery after {description}: {:.1} s", took.as_secs_f64());
    if std::env::var_os("BENCH_JSON").is_some() {
        let seconds = (took.as_secs_f64() * 10.0).round() / 10.0;
        if let Err(err) = record_in("faults", &format!("{fault}_recovery_s"), seconds.into()) {
            println!("the figure was not recorded: {err:#}");
        }
    }
}

fn read(path: &std::path::Path) -> Map<String, Value> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default()
}

fn write(
    path: &std::path::Path,
    mut all: Map<String, Value>,
    section: &str,
    figures: Value,
) -> anyhow::Result<PathBuf> {
    let mut figures = figures;
    if let Value::Object(object) = &mut figures {
        object.insert(
            "recorded_at".into(),
            Value::String(chrono::Utc::now().to_rfc3339()),
        );
    }
    all.insert(section.into(), figures);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(&all)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

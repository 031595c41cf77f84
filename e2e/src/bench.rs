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
    let mut all = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .unwrap_or_default();
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
    std::fs::write(&path, serde_json::to_vec_pretty(&all)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

//! Third-party browser assets come from the npm registry at the versions `assets/package-lock.json`
//! pins (with their integrity hashes): `npm ci` installs them into `OUT_DIR`, and the crate
//! embeds them with `include_bytes!`. Nothing is copied into the repository and nothing is
//! fetched at run time. Each asset's URL carries a hash of its bytes, so it can be cached for
//! good.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let assets = manifest.join("assets");
    for file in ["package.json", "package-lock.json", "app.css"] {
        println!("cargo:rerun-if-changed=assets/{file}");
    }
    let npm = out.join("npm");
    std::fs::create_dir_all(&npm).expect("OUT_DIR is writable");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(assets.join(file), npm.join(file)).expect("the npm manifest is readable");
    }
    let htmx = npm.join("node_modules/htmx.org/dist/htmx.min.js");
    let sse = npm.join("node_modules/htmx-ext-sse/dist/sse.min.js");
    if !htmx.exists() || !sse.exists() {
        let status = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=dev"])
            .current_dir(&npm)
            .status()
            .unwrap_or_else(|err| {
                panic!("carerp-web needs npm to install its browser assets (apt-get install npm): {err}")
            });
        assert!(status.success(), "npm ci failed in {}", npm.display());
    }
    // A copy in OUT_DIR, as the npm assets are: the generated code names no path of the
    // checkout, so a target directory shared by two checkouts never points into the other.
    let css = out.join("app.css");
    std::fs::copy(assets.join("app.css"), &css).expect("the stylesheet is readable");
    let mut rust = String::new();
    for (name, path) in [("HTMX", htmx), ("HTMX_SSE", sse), ("APP_CSS", css)] {
        let bytes = std::fs::read(&path).expect("the asset is readable");
        rust.push_str(&format!(
            "pub const {name}: &[u8] = include_bytes!({:?});\npub const {name}_HASH: &str = \"{:016x}\";\n",
            path.display().to_string(),
            fnv1a(&bytes)
        ));
    }
    write(&out.join("assets.rs"), &rust);
}

/// FNV-1a, 64 bits: a cache key, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("OUT_DIR is writable");
}

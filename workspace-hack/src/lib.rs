//! No code: the package exists for its `[dependencies]` (see its Cargo.toml). The test
//! below keeps the list complete: every dev-dependency of a workspace member that comes from
//! `[workspace.dependencies]` is listed here too, with no feature of its own beyond the
//! workspace's (features belong in `[workspace.dependencies]`, so every user gets the same).

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    /// `name -> the dependency's line`, for every line of the `[section]` table.
    fn section(manifest: &str, section: &str) -> BTreeMap<String, String> {
        let header = format!("[{section}]");
        manifest
            .lines()
            .skip_while(|l| l.trim() != header)
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with('['))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let name = l.split(['.', '=', ' ']).next()?;
                Some((name.to_string(), l.to_string()))
            })
            .collect()
    }

    fn members(root: &str) -> Vec<String> {
        let start = root.find("members = [").expect("a members list");
        let list = &root[start..root[start..].find(']').map(|e| start + e).unwrap()];
        list.split('"')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    #[test]
    fn every_dev_dependency_is_a_dependency_here() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = here.parent().unwrap();
        let root_manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let own = section(
            &std::fs::read_to_string(here.join("Cargo.toml")).unwrap(),
            "dependencies",
        );
        let mut missing = Vec::new();
        for member in members(&root_manifest) {
            let manifest = std::fs::read_to_string(root.join(&member).join("Cargo.toml")).unwrap();
            for (name, line) in section(&manifest, "dev-dependencies") {
                if line.contains("path =") {
                    continue;
                }
                if line.contains("features") {
                    missing.push(format!(
                        "{member}: {line} (declare the features in [workspace.dependencies])"
                    ));
                } else if !own.contains_key(&name) {
                    missing.push(format!(
                        "{member}: {name} (add `{name}.workspace = true` here)"
                    ));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "dev-dependencies that `cargo dev` would build differently:\n{}",
            missing.join("\n")
        );
    }
}

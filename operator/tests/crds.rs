//! `crds/` is generated from the Rust types; this fails when someone changed the types and
//! forgot `just crds`, or edited the YAML by hand.

use std::path::PathBuf;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn committed_crd_matches_the_types() {
    let expected = carerp_operator::crd::crd_yaml().unwrap();
    let committed = std::fs::read_to_string(repo_file("crds/carerp.io_carerptenants.yaml"))
        .expect("crds/carerp.io_carerptenants.yaml exists");
    assert!(
        committed == expected,
        "crds/carerp.io_carerptenants.yaml is stale: run `just crds` and commit the result"
    );
    let chart = std::fs::read_to_string(repo_file(
        "charts/carerp-operator/crds/carerp.io_carerptenants.yaml",
    ))
    .expect("the chart carries the CRD");
    assert!(
        chart == expected,
        "charts/carerp-operator/crds/ is stale: run `just crds` and commit the result"
    );
}

#[test]
fn examples_are_valid_tenants() {
    for example in ["demo-garage", "acme-motors"] {
        let yaml =
            std::fs::read_to_string(repo_file(&format!("crds/examples/{example}.yaml"))).unwrap();
        let tenant = carerp_operator::validate::parse_tenant(&yaml)
            .unwrap_or_else(|err| panic!("{example}: {err}"));
        assert_eq!(tenant.metadata.name.as_deref(), Some(example));
    }
}

/// acme-motors.yaml documents every field: each spec property of the CRD appears in it.
#[test]
fn acme_motors_sets_every_spec_field() {
    let yaml = std::fs::read_to_string(repo_file("crds/examples/acme-motors.yaml")).unwrap();
    let example: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let crd = serde_json::to_value(carerp_operator::crd::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut missing = Vec::new();
    walk("spec", spec, &example["spec"], &mut missing);
    assert!(missing.is_empty(), "acme-motors.yaml lacks {missing:?}");
}

fn walk(
    path: &str,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    missing: &mut Vec<String>,
) {
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    for (name, field) in props {
        let field_path = format!("{path}.{name}");
        // Per-service overrides and k8s resource requirements are examples, not every one.
        if path.starts_with("spec.services") {
            continue;
        }
        match value.get(name) {
            None => missing.push(field_path),
            Some(v) => walk(&field_path, field, v, missing),
        }
    }
}

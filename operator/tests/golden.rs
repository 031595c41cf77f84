//! Golden files of what `render` prints: a change to the desired state shows up as a diff of
//! `operator/tests/golden/*.yaml` in review. `UPDATE_GOLDEN=1 cargo test -p carerp-operator
//! --test golden` rewrites them.

use std::path::PathBuf;

use carerp_operator::config::OperatorConfig;
use carerp_operator::crd::CarErpTenant;
use carerp_operator::desired::{desired, render_yaml};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// A tenant as the API server hands it over: with a uid, so owner references appear.
fn example(name: &str) -> CarErpTenant {
    let yaml = std::fs::read_to_string(repo_file(&format!("crds/examples/{name}.yaml"))).unwrap();
    let mut tenant = carerp_operator::validate::parse_tenant(&yaml).unwrap();
    tenant.metadata.uid = Some("6f1c2a9e-0000-4000-8000-000000000001".into());
    tenant
}

fn check(golden: &str, tenant: &CarErpTenant) {
    let rendered = render_yaml(&desired(tenant, &OperatorConfig::example())).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{golden}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    if rendered != expected {
        let first_difference = rendered
            .lines()
            .zip(expected.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: rendered {a:?}, golden {b:?}", i + 1))
            .unwrap_or_else(|| "lengths differ".into());
        panic!(
            "{golden}: rendered manifests differ from {} ({first_difference}); review and run with UPDATE_GOLDEN=1",
            path.display()
        );
    }
}

#[test]
fn demo_garage() {
    check("demo-garage", &example("demo-garage"));
}

#[test]
fn acme_motors() {
    check("acme-motors", &example("acme-motors"));
}

#[test]
fn acme_motors_suspended() {
    let mut tenant = example("acme-motors");
    tenant.spec.suspend = true;
    check("acme-motors-suspended", &tenant);
}

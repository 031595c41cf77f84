//! Golden files of the desired state: a change to it shows up as a diff of
//! `operator/tests/golden/*.yaml` in review. `UPDATE_GOLDEN=1 cargo test -p carerp-operator
//! --test golden` rewrites them.
//!
//! `demo-garage` is what `render` prints (no passwords known, so no Secret hashes); the
//! `acme-motors` files are what the controller applies once the databases are provisioned,
//! with the hash of each database Secret on the pod templates.

use std::collections::BTreeMap;
use std::path::PathBuf;

use carerp_operator::config::OperatorConfig;
use carerp_operator::crd::{CarErpTenant, SERVICES, Service};
use carerp_operator::desired::{desired, render_yaml, secret_hash};
use carerp_operator::provision::database_url;

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

/// Hashes of the database Secrets the controller would have written (fixed passwords).
fn provisioned(tenant: &CarErpTenant) -> BTreeMap<Service, String> {
    let name = tenant.metadata.name.as_deref().unwrap();
    let config = OperatorConfig::example();
    SERVICES
        .into_iter()
        .filter(|s| s.has_database())
        .map(|s| {
            let url = database_url(
                &config.database_host,
                config.database_port,
                name,
                s,
                "golden",
            );
            (s, secret_hash(&url))
        })
        .collect()
}

fn check(golden: &str, tenant: &CarErpTenant, secret_hashes: &BTreeMap<Service, String>) {
    let rendered = render_yaml(&desired(
        tenant,
        &OperatorConfig::example(),
        secret_hashes,
        None,
    ))
    .unwrap();
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
    check("demo-garage", &example("demo-garage"), &BTreeMap::new());
}

#[test]
fn acme_motors() {
    let tenant = example("acme-motors");
    check("acme-motors", &tenant, &provisioned(&tenant));
}

#[test]
fn acme_motors_suspended() {
    let mut tenant = example("acme-motors");
    tenant.spec.suspend = true;
    check("acme-motors-suspended", &tenant, &provisioned(&tenant));
}

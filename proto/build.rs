//! Compiles the contracts with the protoc that ships in `protoc-bin-vendored`, so a fresh
//! clone builds with nothing but cargo.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "carerp/common/v1/common.proto",
    "carerp/customer/v1/customer.proto",
    "carerp/workorder/v1/workorder.proto",
    "carerp/workorder/v1/inspection.proto",
    "carerp/workorder/v1/canned_job.proto",
    "carerp/workorder/v1/history.proto",
    "carerp/inventory/v1/inventory.proto",
    "carerp/billing/v1/billing.proto",
    "carerp/identity/v1/identity.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("carerp_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), well_known])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}

//! `carerp-inventory`: wiring only.

use carerp_kit::{Database, ServiceConfig};

#[tokio::main]
async fn main() {
    let config = match ServiceConfig::from_env("inventory", Database::Required) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("carerp-inventory: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = match carerp_kit::telemetry::init(&config) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("carerp-inventory: telemetry: {err}");
            std::process::exit(2);
        }
    };
    let running = match carerp_inventory::start(config).await {
        Ok(running) => running,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            eprintln!("carerp-inventory: cannot start: {err}");
            std::process::exit(1);
        }
    };
    carerp_kit::grpc::shutdown_signal().await;
    tracing::info!("shutting down");
    if let Err(err) = running.stop().await {
        tracing::error!("did not stop cleanly: {err}");
        std::process::exit(1);
    }
}

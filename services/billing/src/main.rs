//! `carerp-billing`: wiring only.

use carerp_kit::config::Database;
use carerp_kit::{ServiceConfig, telemetry};

#[tokio::main]
async fn main() {
    let config = match ServiceConfig::from_env("billing", Database::Required) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("carerp-billing: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = match telemetry::init(&config) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("carerp-billing: telemetry: {err}");
            std::process::exit(2);
        }
    };
    let running = match carerp_billing::start(config).await {
        Ok(running) => running,
        Err(err) => {
            tracing::error!(error = %err, "cannot start");
            eprintln!("carerp-billing: cannot start: {err}");
            std::process::exit(1);
        }
    };
    carerp_kit::grpc::shutdown_signal().await;
    if let Err(err) = running.stop().await {
        tracing::error!(error = %err, "stopped with an error");
        std::process::exit(1);
    }
}

//! `carerp-bff`: the tenant's HTTP entry, the REST API and the web app beside it; wiring only.

use carerp_bff::BffConfig;

#[tokio::main]
async fn main() {
    let config = match BffConfig::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("carerp-bff: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = match carerp_kit::telemetry::init(&config.service) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("carerp-bff: telemetry: {err}");
            std::process::exit(2);
        }
    };
    let running = match carerp_web::start(config).await {
        Ok(running) => running,
        Err(err) => {
            tracing::error!("cannot start: {err:#}");
            eprintln!("carerp-bff: cannot start: {err:#}");
            std::process::exit(1);
        }
    };
    carerp_kit::grpc::shutdown_signal().await;
    tracing::info!("shutting down");
    if let Err(err) = running.stop().await {
        tracing::error!("stopped with an error: {err:#}");
        std::process::exit(1);
    }
}

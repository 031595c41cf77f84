use carerp_kit::{Database, ServiceConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match ServiceConfig::from_env("customer", Database::Required) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("carerp-customer: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = carerp_kit::telemetry::init(&config)?;
    let service = carerp_customer::start(config).await?;
    carerp_kit::grpc::shutdown_signal().await;
    tracing::info!("shutting down: draining requests in flight");
    service.stop().await?;
    Ok(())
}

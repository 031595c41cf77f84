use carerp_identity::IdentityConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match IdentityConfig::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("carerp-identity: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = carerp_kit::telemetry::init(&config.service)?;
    let service = carerp_identity::start(config).await?;
    carerp_kit::grpc::shutdown_signal().await;
    tracing::info!("shutting down: draining requests in flight");
    service.stop().await?;
    Ok(())
}

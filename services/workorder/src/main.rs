use carerp_kit::{Database, ServiceConfig};
use carerp_workorder::Peers;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let configured = ServiceConfig::from_env("workorder", Database::Required)
        .map_err(|err| err.to_string())
        .and_then(|config| {
            Peers::from_env()
                .map(|peers| (config, peers))
                .map_err(|err| err.to_string())
        });
    let (config, peers) = match configured {
        Ok(configured) => configured,
        Err(err) => {
            eprintln!("carerp-workorder: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = carerp_kit::telemetry::init(&config)?;
    let service = carerp_workorder::start(config, peers).await?;
    carerp_kit::grpc::shutdown_signal().await;
    tracing::info!("shutting down: draining requests in flight");
    service.stop().await?;
    Ok(())
}

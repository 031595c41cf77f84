use carerp_kit::{Database, ServiceConfig};
use carerp_workorder::CustomerDirectory;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let configured = ServiceConfig::from_env("workorder", Database::Required)
        .map_err(|err| err.to_string())
        .and_then(|config| {
            CustomerDirectory::from_env()
                .map(|customers| (config, customers))
                .map_err(|err| err.to_string())
        });
    let (config, customers) = match configured {
        Ok(configured) => configured,
        Err(err) => {
            eprintln!("carerp-workorder: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let _telemetry = carerp_kit::telemetry::init(&config)?;
    let service = carerp_workorder::start(config, customers).await?;
    carerp_kit::grpc::shutdown_signal().await;
    tracing::info!("shutting down: draining requests in flight");
    service.stop().await?;
    Ok(())
}

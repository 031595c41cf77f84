use carerp_kit::{Database, ServiceConfig};
use carerp_workorder::customers::{self, CustomerDirectory};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let configured = ServiceConfig::from_env("workorder", Database::Required).and_then(|config| {
        ServiceConfig::service_url("CUSTOMER_GRPC_URL").map(|url| (config, url))
    });
    let (config, customer_url) = match configured {
        Ok(configured) => configured,
        Err(err) => {
            eprintln!("carerp-workorder: configuration error: {err}");
            std::process::exit(2);
        }
    };
    let customers =
        match CustomerDirectory::connect_lazy(&customer_url, customers::DEFAULT_DEADLINE) {
            Ok(customers) => customers,
            Err(err) => {
                eprintln!("carerp-workorder: configuration error: CUSTOMER_GRPC_URL: {err}");
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

//! `carerp-operator`: wiring only; each subcommand lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use carerp_operator::config::OperatorArgs;
use carerp_operator::crd::CarErpTenant;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "carerp-operator",
    version,
    about = "Runs Car ERP tenants, in a cluster or on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CarErpTenant CustomResourceDefinition as YAML.
    Crd,
    /// Print every manifest the operator would apply for a tenant, as YAML documents.
    Render {
        /// The tenant file (a CarErpTenant in YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

/// Reads and validates a tenant file, printing why it is refused.
fn load_tenant(path: &Path) -> Result<CarErpTenant, ExitCode> {
    let yaml = std::fs::read_to_string(path).map_err(|err| {
        eprintln!("carerp-operator: cannot read {}: {err}", path.display());
        ExitCode::from(2)
    })?;
    carerp_operator::validate::parse_tenant(&yaml).map_err(|err| {
        eprintln!("carerp-operator: {}: invalid tenant: {err}", path.display());
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match carerp_operator::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("carerp-operator: cannot write the CRD: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Render { file, operator } => {
            let config = match operator.config() {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("carerp-operator: configuration error: {err}");
                    return ExitCode::from(2);
                }
            };
            let tenant = match load_tenant(&file) {
                Ok(tenant) => tenant,
                Err(code) => return code,
            };
            let objects = carerp_operator::desired::desired(&tenant, &config);
            match carerp_operator::desired::render_yaml(&objects) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("carerp-operator: cannot write YAML: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `cargo run -p carerp-e2e --bin control-plane`: the test control plane of `e2e/src/cluster.rs`
//! for a person: starts it, prints its kubeconfig and how long it took to start, and stops it
//! on Ctrl-C. With `--check`, stops right after starting (the start-up benchmark).

use std::process::ExitCode;

use carerp_e2e::cluster::ControlPlane;

#[tokio::main]
async fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let plane = match ControlPlane::start().await {
        Ok(Some(plane)) => plane,
        Ok(None) => return ExitCode::FAILURE,
        Err(err) => {
            eprintln!("control-plane: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "control plane started in {:.1} s\nexport KUBECONFIG={}",
        plane.startup().as_secs_f64(),
        plane.admin_kubeconfig().display()
    );
    if !check {
        println!("Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(plane);
    ExitCode::SUCCESS
}

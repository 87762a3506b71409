//! The life of a service binary: configuration, telemetry, signals, exit code. Every service's
//! `main` is one call to [`run_service`].

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::config::{self, ServiceConfig};
use crate::shutdown::{self, Shutdown};
use crate::telemetry;

/// Loads `C` from `PILLIVERY_CONFIG_FILE` (optional) and the `PILLIVERY_…` environment — exiting
/// with one line and code 64 when it is invalid — installs telemetry, and runs `run` until it
/// returns; Ctrl-C or SIGTERM asks it to stop.
pub async fn run_service<C, F, Fut, E>(service: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let file = std::env::var_os("PILLIVERY_CONFIG_FILE").map(std::path::PathBuf::from);
    let config: C = config::exit_on_error(config::load(
        file.as_deref(),
        &config::process_environment(),
    ));
    let _telemetry = telemetry::init(service, config.telemetry());
    let stop = Shutdown::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        signal.trigger();
    });
    match run(config, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(service, %error, "service failed");
            eprintln!("pillivery-{service}: {error}");
            ExitCode::FAILURE
        }
    }
}

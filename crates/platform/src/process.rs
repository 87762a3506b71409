//! The life of a service binary: configuration, telemetry, signals, exit code. Every service's
//! `main` is one call to [`run_service`].
//!
//! Two flags serve deployment tooling, so it needs nothing but the image:
//! - `--check-config`: load and validate the configuration from the environment (and the file),
//!   print one line and exit 0, or 64 when it is invalid; nothing is bound or connected. The
//!   deploy checks run it on the environment the Helm chart renders.
//! - `--migrate`: start as usual and stop at once: every service migrates its database before
//!   it serves (DESIGN: "migrations run before ready"), so this runs the migrations and exits
//!   0, or 1 when they fail. The chart's pre-install/pre-upgrade Job runs it.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::config::{self, EXIT_BAD_CONFIG, ServiceConfig};
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
    let mode = match Mode::from_arguments(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(reason) => {
            eprintln!("pillivery-{service}: {reason}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    let file = std::env::var_os("PILLIVERY_CONFIG_FILE").map(std::path::PathBuf::from);
    let config: C = config::exit_on_error(config::load(
        file.as_deref(),
        &config::process_environment(),
    ));
    if mode == Mode::CheckConfig {
        println!("pillivery-{service}: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let _telemetry = telemetry::init(service, config.telemetry());
    let stop = Shutdown::new();
    if mode == Mode::Migrate {
        tracing::info!(service, "migrating, then stopping");
        stop.trigger();
    } else {
        let signal = stop.clone();
        tokio::spawn(async move {
            shutdown::os_signal().await;
            signal.trigger();
        });
    }
    match run(config, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(service, %error, "service failed");
            eprintln!("pillivery-{service}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the binary was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Serve,
    CheckConfig,
    Migrate,
}

impl Mode {
    fn from_arguments(arguments: impl Iterator<Item = String>) -> Result<Mode, String> {
        let mut mode = Mode::Serve;
        for argument in arguments {
            let asked = match argument.as_str() {
                "--check-config" => Mode::CheckConfig,
                "--migrate" => Mode::Migrate,
                other => {
                    return Err(format!(
                        "unknown argument `{other}` (configuration comes from PILLIVERY_… variables; flags: --check-config, --migrate)"
                    ));
                }
            };
            if mode != Mode::Serve && mode != asked {
                return Err("--check-config and --migrate exclude each other".into());
            }
            mode = asked;
        }
        Ok(mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(arguments: &[&str]) -> Result<Mode, String> {
        Mode::from_arguments(arguments.iter().map(|argument| argument.to_string()))
    }

    #[test]
    fn flags_choose_the_mode_and_anything_else_is_refused() {
        assert_eq!(mode(&[]), Ok(Mode::Serve));
        assert_eq!(mode(&["--check-config"]), Ok(Mode::CheckConfig));
        assert_eq!(mode(&["--migrate"]), Ok(Mode::Migrate));
        assert!(mode(&["--check-config", "--migrate"]).is_err());
        let unknown = mode(&["--port=1"]).unwrap_err();
        assert!(unknown.contains("--port=1"), "{unknown}");
    }
}

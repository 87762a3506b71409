//! `pillivery`: the whole fleet in one process. `cargo run --release` at the repository root.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pillivery::{Fleet, FleetOptions, Storage};
use pillivery_platform::shutdown::{self, Shutdown};
use pillivery_platform::telemetry::{self, LogFormat, TelemetryConfig};

/// Pillivery, the supplement shop backend: every service in one process, on loopback ports,
/// talking real gRPC, with SQLite files in the data folder and demo catalog data.
#[derive(Debug, Parser)]
#[command(name = "pillivery", version)]
struct Cli {
    /// Port of the REST gateway on 127.0.0.1.
    #[arg(long, env = "PILLIVERY_HTTP_PORT", default_value_t = 8080)]
    http_port: u16,

    /// Folder for the SQLite databases (one per service) and other local state.
    #[arg(long, env = "PILLIVERY_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// Number of demo items loaded into an empty catalog (the load tests use 40000).
    #[arg(long, env = "PILLIVERY_SEED_ITEMS", default_value_t = 200)]
    seed_items: u32,

    /// Use this PostgreSQL (one schema per service) or MySQL/MariaDB (one database per
    /// service) server instead of SQLite files, e.g. postgres://postgres@127.0.0.1:5432/test.
    #[arg(long, env = "PILLIVERY_DATABASE_URL")]
    database_url: Option<String>,

    /// Log format: pretty (default, for a terminal) or json.
    #[arg(long, env = "PILLIVERY_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,

    /// Log filter, e.g. info or info,gateway=debug.
    #[arg(long, env = "PILLIVERY_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error)
            if matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            print!("{error}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // One line, like every other configuration error, and exit code 64.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "pillivery: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(64);
        }
    };
    let telemetry_config = TelemetryConfig {
        log_format: if cli.log_format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        },
        log_level: cli.log_level.clone(),
        otlp_endpoint: None,
    };
    if let Err(reason) = telemetry_config.validate() {
        eprintln!("pillivery: {reason}");
        return ExitCode::from(64);
    }
    let _telemetry = telemetry::init("pillivery", &telemetry_config);
    let storage = match Storage::from_url(cli.database_url.as_deref(), &cli.data_dir) {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("pillivery: {error}");
            return ExitCode::from(64);
        }
    };
    let (admin, generated_now) = match pillivery::AdminAccount::from_environment(
        std::env::var("PILLIVERY_ADMIN_EMAIL")
            .ok()
            .filter(|value| !value.is_empty()),
        std::env::var("PILLIVERY_ADMIN_PASSWORD")
            .ok()
            .filter(|value| !value.is_empty()),
        &cli.data_dir,
    ) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("pillivery: {error:#}");
            return ExitCode::from(64);
        }
    };
    let options = FleetOptions {
        http_port: cli.http_port,
        data_dir: cli.data_dir.clone(),
        storage,
        jwt_private_key: std::env::var("PILLIVERY_JWT_PRIVATE_KEY")
            .ok()
            .filter(|pem| !pem.trim().is_empty()),
        admin: admin.clone(),
        oauth: Default::default(),
        demo_items: cli.seed_items,
        start_timeout: Duration::from_secs(120),
    };
    // Listening for Ctrl-C/SIGTERM from the start, so a stop during start-up is graceful too.
    let stop = Shutdown::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        signal.trigger();
    });
    let mut fleet = tokio::select! {
        started = Fleet::start(options) => match started {
            Ok(fleet) => fleet,
            Err(error) => {
                eprintln!("pillivery: could not start the fleet: {error:#}");
                return ExitCode::FAILURE;
            }
        },
        () = stop.wait() => {
            eprintln!("pillivery: stopped while starting");
            return ExitCode::FAILURE;
        }
    };
    announce(&fleet, &admin, generated_now, &cli.data_dir);
    let outcome = fleet.run_until(stop).await;
    if let Err(error) = &outcome {
        eprintln!("pillivery: {error:#}");
    }
    match fleet.shutdown().await {
        Ok(()) if outcome.is_ok() => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("pillivery: shutdown: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn announce(
    fleet: &Fleet,
    admin: &pillivery::AdminAccount,
    generated_now: bool,
    data_dir: &std::path::Path,
) {
    let base = format!("http://{}", fleet.http_addr);
    println!();
    println!("Pillivery is running at {base}  (Ctrl-C stops it)");
    println!();
    for name in pillivery::SERVICES {
        if let Some(service) = fleet.service(name) {
            println!(
                "  {name:<10} gRPC {}  admin http://{}/metrics",
                service.grpc_addr, service.admin_addr
            );
        }
    }
    println!();
    if generated_now {
        println!(
            "Administrator: {}  password: {}  (generated now and shown once; also in {})",
            admin.email,
            admin.password,
            data_dir.join(pillivery::ADMIN_PASSWORD_FILE).display()
        );
    } else {
        println!(
            "Administrator: {}  (password from PILLIVERY_ADMIN_PASSWORD or {})",
            admin.email,
            data_dir.join(pillivery::ADMIN_PASSWORD_FILE).display()
        );
    }
    println!();
    println!("Try:");
    println!("  curl '{base}/api/categories'");
    println!("  curl '{base}/api/items?category=EYE&sort=PRICE_L&page=1&size=20'");
    println!("  curl '{base}/api/items/1'");
    println!("  (the API: {base}/api/openapi.json)");
    println!();
}

//! `pillivery-load`: load tests of the Pillivery REST gateway (issue 4, SPEC section 11).
//!
//! `closed` runs a scenario on goose with N users back to back (throughput); `open` sends at a
//! fixed rate and measures latency from each request's due time (latency without coordinated
//! omission). Both print a per-route table of p50/p95/p99 and throughput and can append it to
//! a summary file. `load/README.md` says how to run them against the embedded fleet and against
//! a production-mode deployment; `load/run-browse.sh` does the whole embedded run.
#![forbid(unsafe_code)]

mod closed;
mod open;
mod payments;
mod renewals;
mod summary;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::targets::{Plan, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "pillivery-load",
    version,
    about = "Load tests of the Pillivery REST gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed loop on goose: N users sending back to back; measures throughput.
    Closed {
        #[command(flatten)]
        common: Common,
        /// Concurrent users (connections).
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// How long to run after all users started, in goose's format (30s, 2m).
        #[arg(long, default_value = "30s")]
        run_time: String,
        /// More goose options, after `--`, e.g. `-- --report-file report.html`.
        #[arg(last = true)]
        goose_args: Vec<String>,
    },
    /// Open loop at a fixed rate; latency from each request's due time.
    Open {
        #[command(flatten)]
        common: Common,
        /// Requests per second, evenly spaced.
        #[arg(long)]
        rate: f64,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seconds sent first at the same rate and not counted.
        #[arg(long, default_value_t = 5)]
        warmup_seconds: u64,
        /// Requests in flight at most; sending waits beyond, and the wait counts as latency.
        #[arg(long, default_value_t = 2048)]
        max_in_flight: usize,
        /// Client connection pools to spread the requests over.
        #[arg(long, default_value_t = 64)]
        clients: u32,
    },
    /// Renewal throughput through the scheduler: creates subscriptions over the API, slows the
    /// payment sandbox down, runs `POST /api/admin/billing/runs` and reports charges/s.
    Renewals(RenewalArgs),
    /// Many payment approvals at once against a slowed-down PG (SPEC 11, "payment approve").
    PaymentApprove(payments::ApproveArgs),
    /// The PG breaker under a failure ramp, with catalog browsing beside it (SPEC 9).
    Breaker(payments::BreakerArgs),
}

#[derive(Debug, Args)]
struct RenewalArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "PILLIVERY_LOAD_HOST",
        default_value = "http://127.0.0.1:8080"
    )]
    host: String,
    /// The fleet's administrator (runs billing).
    #[arg(
        long,
        env = "PILLIVERY_ADMIN_EMAIL",
        default_value = "admin@pillivery.local"
    )]
    admin_email: String,
    /// The administrator's password (the fleet prints it on a first start and keeps it in
    /// `<data-dir>/admin-password`).
    #[arg(long, env = "PILLIVERY_ADMIN_PASSWORD")]
    admin_password: String,
    /// Subscriptions to create and renew (rounded up to whole orders).
    #[arg(long, default_value_t = 2_000)]
    subscriptions: usize,
    /// Subscription lines per order (at most 50): one PG key per order.
    #[arg(long, default_value_t = 50)]
    lines_per_order: usize,
    /// Orders per customer.
    #[arg(long, default_value_t = 10)]
    orders_per_customer: usize,
    /// Items to pick lines from (ids 1..=N).
    #[arg(long, default_value_t = 200)]
    items: usize,
    /// Period of every subscription, in days; each round bills one period later.
    #[arg(long, default_value_t = 30)]
    period_days: u32,
    /// Orders placed and paid at once while setting up.
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
    /// The payment sandbox's origin; by default taken from the first payment page's URL.
    #[arg(long)]
    sandbox: Option<String>,
    /// Latency the sandbox adds to every KakaoPay call during the runs (SPEC: 50 ms).
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Billing runs, one period apart; every subscription is due in each.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Milliseconds waited after the last payment for the billing jobs' events.
    #[arg(long, default_value_t = 5_000)]
    settle_ms: u64,
    /// Per-request timeout of the set-up calls, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_seconds: u64,
}

#[derive(Debug, Args)]
struct Common {
    /// What to send.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The gateway's base URL.
    #[arg(
        long,
        env = "PILLIVERY_LOAD_HOST",
        default_value = "http://127.0.0.1:8080"
    )]
    host: String,
    /// Items seeded (ids 1..=N); `pillivery --seed-items N` numbers them so.
    #[arg(long, default_value_t = 40_000)]
    items: u32,
    /// Distinct client addresses the requests claim in X-Forwarded-For (and, against a
    /// loopback host, distinct source addresses the sockets bind).
    #[arg(long, default_value_t = 256)]
    client_ips: u32,
    /// Ask for gzip. Off by default so the bytes match the nginx baseline's file.
    #[arg(long)]
    gzip: bool,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u64,
    /// Names the target in the summary (fleet, nginx, ...).
    #[arg(long, default_value = "fleet")]
    label: String,
    /// Append the per-route rows to this Markdown file as well.
    #[arg(long)]
    summary: Option<PathBuf>,
}

impl Common {
    fn plan(&self) -> Arc<Plan> {
        Arc::new(Plan {
            scenario: self.scenario,
            items: self.items,
            client_ips: self.client_ips,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (common, outcome) = match cli.command {
        Command::PaymentApprove(args) => return payments::approve(args).await,
        Command::Breaker(args) => return payments::breaker(args).await,
        Command::Renewals(args) => {
            let options = renewals::RenewalOptions {
                host: args.host,
                admin_email: args.admin_email,
                admin_password: args.admin_password,
                subscriptions: args.subscriptions,
                lines_per_order: args.lines_per_order,
                orders_per_customer: args.orders_per_customer,
                items: args.items,
                period_days: args.period_days,
                setup_concurrency: args.setup_concurrency,
                sandbox: args.sandbox,
                latency_ms: args.latency_ms,
                rounds: args.rounds,
                settle: Duration::from_millis(args.settle_ms),
                timeout: Duration::from_secs(args.timeout_seconds),
            };
            return match renewals::run(&options).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("pillivery-load: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Closed {
            common,
            users,
            run_time,
            goose_args,
        } => {
            let options = closed::ClosedOptions {
                host: common.host.clone(),
                users,
                run_time,
                label: common.label.clone(),
                gzip: common.gzip,
                timeout: Duration::from_secs(common.timeout_seconds),
                goose_args,
            };
            let outcome = closed::run(common.plan(), &options).await;
            (common, outcome)
        }
        Command::Open {
            common,
            rate,
            seconds,
            warmup_seconds,
            max_in_flight,
            clients,
        } => {
            let options = open::OpenOptions {
                host: common.host.clone(),
                rate,
                seconds,
                warmup_seconds,
                max_in_flight,
                clients,
                label: common.label.clone(),
                gzip: common.gzip,
                timeout: Duration::from_secs(common.timeout_seconds),
            };
            let outcome = open::run(common.plan(), &options).await;
            (common, outcome)
        }
    };
    let rows = match outcome {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("pillivery-load: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    print!("{}", summary::table(&rows));
    if let Some(path) = &common.summary
        && let Err(error) = summary::append(path, &rows)
    {
        eprintln!("pillivery-load: writing {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    if rows
        .iter()
        .any(|row| row.requests == 0 && !row.route.starts_with('('))
        || rows.is_empty()
    {
        eprintln!("pillivery-load: no request completed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

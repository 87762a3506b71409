//! Open loop at a fixed rate, corrected for coordinated omission.
//!
//! Goose cannot do this: `--throttle-requests` only caps how fast its users may go (a user still
//! waits for its answer before its next request, and the time spent waiting for the throttle is
//! not counted), and `--co-mitigation` backfills made-up requests at the user's usual cadence
//! after a stall. Here request `i` is due at `start + i / rate` whatever happened before, and
//! its latency runs from that due time to the last byte of the answer. A stalled server, or a
//! client that cannot keep up, therefore shows up in the percentiles instead of hiding in a
//! lower request count. How late the client itself sent (its "send lag") is reported too, so a
//! run where the load generator was the bottleneck can be told apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::summary::Row;
use crate::targets::{Plan, Route, is_loopback_host, loopback_source};

/// What the command line says about an open-loop run.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub host: String,
    /// Requests per second, spread evenly.
    pub rate: f64,
    /// Measured seconds, after the warm-up.
    pub seconds: u64,
    /// Seconds sent at the same rate first and not counted: connections are opened and caches
    /// filled then.
    pub warmup_seconds: u64,
    /// At most this many requests in flight; when reached, sending waits (and the wait counts
    /// in the latency of the requests it delays, as it should).
    pub max_in_flight: usize,
    /// Clients (connection pools) to spread requests over; on a loopback host each one binds
    /// its own source address.
    pub clients: u32,
    pub label: String,
    pub gzip: bool,
    pub timeout: Duration,
}

/// Times of one route (or of all), in microseconds.
struct Stats {
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
}

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        Ok(Stats {
            // 1 µs to 10 minutes at 3 significant digits: 0.1 % resolution, as wrk2 keeps.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).context("latency histogram")?,
            requests: 0,
            errors: 0,
        })
    }

    fn record(&mut self, latency: Duration, ok: bool) {
        self.latency.saturating_record(
            u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        self.requests += 1;
        if !ok {
            self.errors += 1;
        }
    }
}

/// Everything recorded during the measured window.
struct Recorder {
    routes: BTreeMap<Route, Stats>,
    all: Stats,
    send_lag: Histogram<u64>,
}

/// The rows of the run (per route, `all` when there are several, and the client's send lag
/// as a row of its own so it is never missed).
pub async fn run(plan: Arc<Plan>, options: &OpenOptions) -> anyhow::Result<Vec<Row>> {
    anyhow::ensure!(options.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(options.seconds > 0, "--seconds must be positive");
    let clients = build_clients(options)?;
    let base = options.host.trim_end_matches('/').to_owned();
    let recorder = Arc::new(Mutex::new(Recorder {
        routes: BTreeMap::new(),
        all: Stats::new()?,
        send_lag: Histogram::new_with_bounds(1, 600_000_000, 3).context("lag histogram")?,
    }));
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));

    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let total = (options.rate * (options.warmup_seconds + options.seconds) as f64) as u64;
    let warmup = (options.rate * options.warmup_seconds as f64) as u64;
    // A little ahead, so the first requests are not late because of the setup above.
    let start = Instant::now() + Duration::from_millis(50);
    let runtime = tokio::runtime::Handle::current();

    // The schedule runs on a thread of its own: tokio's timer fires at millisecond ticks, which
    // at 2 000 req/s would bunch requests in pairs and add up to a millisecond of made-up
    // latency; a thread's sleep wakes within tens of microseconds.
    let dispatcher = {
        let recorder = recorder.clone();
        let in_flight = in_flight.clone();
        let plan = plan.clone();
        std::thread::Builder::new()
            .name("open-loop-schedule".into())
            .spawn(move || {
                let mut rng = rand::rng();
                for index in 0..total {
                    let due = start + interval.mul_f64(index as f64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let Ok(permit) = runtime.block_on(in_flight.clone().acquire_owned()) else {
                        return;
                    };
                    let target = plan.next(&mut rng);
                    let client = clients[(index % clients.len() as u64) as usize].clone();
                    let url = format!("{base}{}", target.path);
                    let recorder = recorder.clone();
                    let counted = index >= warmup;
                    runtime.spawn(async move {
                        let sent = Instant::now();
                        let ok = match client
                            .get(&url)
                            .header("x-forwarded-for", target.client_ip.to_string())
                            .send()
                            .await
                        {
                            Ok(response) => {
                                let status = response.status();
                                response.bytes().await.is_ok() && status.is_success()
                            }
                            Err(_) => false,
                        };
                        let latency = Instant::now().saturating_duration_since(due);
                        drop(permit);
                        if counted && let Ok(mut recorder) = recorder.lock() {
                            let lag =
                                u64::try_from(sent.saturating_duration_since(due).as_micros())
                                    .unwrap_or(u64::MAX);
                            recorder.send_lag.saturating_record(lag.max(1));
                            recorder.all.record(latency, ok);
                            if let Some(stats) = recorder.routes.get_mut(&target.route) {
                                stats.record(latency, ok);
                            } else if let Ok(mut stats) = Stats::new() {
                                stats.record(latency, ok);
                                recorder.routes.insert(target.route, stats);
                            }
                        }
                    });
                }
            })
            .context("starting the schedule thread")?
    };
    tokio::task::spawn_blocking(move || dispatcher.join())
        .await
        .context("waiting for the schedule")?
        .map_err(|_| anyhow::anyhow!("the schedule thread panicked"))?;
    // Every permit back means every request has finished and been recorded.
    let _all = in_flight
        .acquire_many(u32::try_from(options.max_in_flight.max(1)).unwrap_or(u32::MAX))
        .await
        .context("waiting for the last requests")?;

    let recorder = recorder
        .lock()
        .map_err(|_| anyhow::anyhow!("a request task panicked while recording"))?;
    Ok(rows(&recorder, &plan, options))
}

fn build_clients(options: &OpenOptions) -> anyhow::Result<Vec<reqwest::Client>> {
    let loopback = is_loopback_host(&options.host);
    (0..options.clients.max(1))
        .map(|index| {
            let mut builder = reqwest::Client::builder()
                .timeout(options.timeout)
                .user_agent("pillivery-load");
            if !options.gzip {
                builder = builder.no_gzip();
            }
            if loopback {
                builder = builder.local_address(loopback_source(index));
            }
            builder.build().context("building an HTTP client")
        })
        .collect()
}

fn rows(recorder: &Recorder, plan: &Plan, options: &OpenOptions) -> Vec<Row> {
    let mode = format!("open {}/s", options.rate);
    let seconds = options.seconds as f64;
    let row = |route: &str, stats: &Stats| Row {
        label: options.label.clone(),
        scenario: plan.scenario.name().to_owned(),
        mode: mode.clone(),
        route: route.to_owned(),
        requests: stats.requests,
        errors: stats.errors,
        throughput: (stats.requests - stats.errors) as f64 / seconds,
        p50_us: stats.latency.value_at_quantile(0.50),
        p95_us: stats.latency.value_at_quantile(0.95),
        p99_us: stats.latency.value_at_quantile(0.99),
        max_us: stats.latency.max(),
    };
    let mut rows: Vec<Row> = recorder
        .routes
        .iter()
        .map(|(route, stats)| row(route.name(), stats))
        .collect();
    if rows.len() > 1 {
        rows.push(row("all", &recorder.all));
    }
    let lag = &recorder.send_lag;
    rows.push(Row {
        route: "(client send lag)".into(),
        requests: lag.len(),
        errors: 0,
        throughput: lag.len() as f64 / seconds,
        p50_us: lag.value_at_quantile(0.50),
        p95_us: lag.value_at_quantile(0.95),
        p99_us: lag.value_at_quantile(0.99),
        max_us: lag.max(),
        ..row("", &recorder.all)
    });
    rows
}

//! The payment load tests of issue 6 (SPEC section 11, "payment approve, PG answering in 2 s",
//! and section 9, "an open breaker answers in < 1 ms; one slow downstream does not slow routes
//! that do not use it").
//!
//! Both drive the REST gateway the way the buyers' browsers do, and reach the payment sandbox
//! (`crates/sandbox-pg`) on its own origin, which every ready names in `nextRedirectPcUrl`, so
//! nothing but the gateway's address has to be given:
//!
//! - `payment-approve`: N buyers each sign up, order and ready (no faults), then the sandbox's
//!   latency is set for `approve`, every buyer follows its page with `auto=approve`, all wait at
//!   one barrier, and the N approvals go to the gateway at once. The approve call's latency is
//!   compared with the injected PG latency, and the ledger must hold one charge per order.
//! - `breaker`: a few buyers with paid orders look their payments up at a fixed rate (each
//!   lookup asks the PG live) while catalog browsing runs at a fixed rate beside them; the
//!   sandbox's 5xx rate ramps to 75 %, is held, then removed. The payment service's `/metrics`
//!   is scraped throughout for the `pg` breaker's state.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

use crate::summary::{self, Row};
use crate::targets::{Plan, Scenario, is_loopback_host, loopback_source};

/// Where the buyers' loopback source addresses start, past the browse clients' (see
/// [`loopback_source`]): the user service allows 10 logins a minute per client address, and the
/// embedded gateway counts the TCP peer, so every buyer needs an address of its own.
const BUYER_SOURCE_OFFSET: u32 = 4_096;

/// How long the SPEC allows the fleet to add to the PG's latency.
const SPEC_OVERHEAD_MS: u64 = 10;

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "PILLIVERY_LOAD_HOST",
        default_value = "http://127.0.0.1:8080"
    )]
    host: String,
    /// Approvals fired at once (one buyer and one order each).
    #[arg(long, default_value_t = 1_000)]
    approvals: u32,
    /// Approvals sent per second after the release, evenly spaced (open loop: latency counts
    /// from each one's due time). 0 sends all at once: a burst of N arrivals, which measures
    /// how long the fleet takes to work through N approvals, not the latency at N in flight.
    /// At `--approvals / (--pg-latency-ms / 1000)` per second the last approvals are sent as
    /// the first come back, so about N are in flight at the peak.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Latency the sandbox adds to every `approve` call, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pg_latency_ms: u64,
    /// How much the approve call may take beyond the PG latency (SPEC: 10 ms), judged at p99.
    #[arg(long, default_value_t = SPEC_OVERHEAD_MS)]
    max_overhead_ms: u64,
    /// Buyers prepared at once (sign-up and login hash passwords: CPU-bound).
    #[arg(long, default_value_t = 16)]
    prepare_concurrency: usize,
    /// Seeded items to order from (ids 1..=N).
    #[arg(long, default_value_t = 200)]
    items: u32,
    /// The sandbox's origin; by default the one the first ready's `nextRedirectPcUrl` names.
    #[arg(long)]
    sandbox: Option<String>,
    /// The payment service's metrics (`http://<admin>/metrics`); when given, its view of the
    /// PG's approve latency (and, in the embedded fleet, the gateway's of the route) is
    /// printed after the run, which splits the overhead between the PG call and the rest.
    #[arg(long)]
    payment_metrics: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_seconds: u64,
    /// Names the target in the summary.
    #[arg(long, default_value = "fleet")]
    label: String,
    /// Append the rows to this Markdown file as well.
    #[arg(long)]
    summary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BreakerArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "PILLIVERY_LOAD_HOST",
        default_value = "http://127.0.0.1:8080"
    )]
    host: String,
    /// The payment service's metrics, e.g. `http://127.0.0.1:40123/metrics` (the embedded
    /// fleet prints each service's admin address at start).
    #[arg(long)]
    payment_metrics: String,
    /// The sandbox's origin; by default the one the first ready's `nextRedirectPcUrl` names.
    #[arg(long)]
    sandbox: Option<String>,
    /// Payment lookups (`GET /api/payments/orders/{id}`, a live PG lookup each) per second.
    #[arg(long, default_value_t = 50.0)]
    lookup_rate: f64,
    /// Catalog browsing requests per second (the `browse` scenario's mix).
    #[arg(long, default_value_t = 200.0)]
    browse_rate: f64,
    /// Buyers with a paid order whose payments are looked up, round robin.
    #[arg(long, default_value_t = 20)]
    buyers: u32,
    /// Seeded items (browsing and the buyers' orders use ids 1..=N).
    #[arg(long, default_value_t = 200)]
    items: u32,
    /// Seconds without faults first.
    #[arg(long, default_value_t = 10)]
    baseline_seconds: u64,
    /// The 5xx rate the ramp reaches.
    #[arg(long, default_value_t = 0.75)]
    to_rate: f64,
    /// Seconds the ramp takes from 0 to `--to-rate`.
    #[arg(long, default_value_t = 30)]
    ramp_seconds: u64,
    /// Latency the sandbox adds to every call while the faults are on, in milliseconds: a PG
    /// that is slow as well as failing, so a call the breaker lets out is visibly slower than
    /// one it refuses (the sandbox's 5xx alone answer in microseconds). 0 for none.
    #[arg(long, default_value_t = 300)]
    fault_latency_ms: u64,
    /// Seconds held at `--to-rate` after the ramp.
    #[arg(long, default_value_t = 20)]
    hold_seconds: u64,
    /// Seconds after the faults are removed.
    #[arg(long, default_value_t = 30)]
    recovery_seconds: u64,
    /// Timeline rows every this many seconds.
    #[arg(long, default_value_t = 5)]
    bucket_seconds: u64,
    /// How often `/metrics` and the sandbox's fault state are read, in milliseconds.
    #[arg(long, default_value_t = 100)]
    scrape_ms: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u64,
}

// ---- buyers ---------------------------------------------------------------------------------

/// A signed-up, logged-in buyer with an order in REQUEST and a ready payment.
struct Buyer {
    client: reqwest::Client,
    token: String,
    order_id: i64,
    /// The sandbox's buyer page for this payment (`nextRedirectPcUrl`).
    page: String,
}

/// How buyers are made: against which gateway, with which client settings.
#[derive(Clone)]
struct Shop {
    base: String,
    loopback: bool,
    timeout: Duration,
    items: u32,
    /// Distinguishes this run's accounts from earlier runs' against the same fleet (email,
    /// display name and phone are unique among active users).
    tag: u32,
}

impl Shop {
    fn new(host: &str, timeout: Duration, items: u32) -> Shop {
        Shop {
            base: host.trim_end_matches('/').to_owned(),
            loopback: is_loopback_host(host),
            timeout,
            items: items.max(1),
            tag: rand::rng().random_range(1_000..10_000),
        }
    }

    fn client(&self, source: u32) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent("pillivery-load")
            // Each hop is checked, as a browser would follow it.
            .redirect(reqwest::redirect::Policy::none())
            // Kept from the ready to the approval, so the approvals do not open 1 000
            // connections at once and measure the accept queue.
            .pool_idle_timeout(Duration::from_secs(900))
            .no_gzip();
        if self.loopback {
            builder = builder.local_address(loopback_source(source));
        }
        builder.build().context("building an HTTP client")
    }

    /// Sign-up, login, a one-line order and its ready; `n` numbers the buyer in this run.
    async fn buyer(&self, n: u32) -> anyhow::Result<Buyer> {
        let client = self.client(BUYER_SOURCE_OFFSET + n)?;
        let base = &self.base;
        let tag = self.tag;
        let email = format!("load{tag}-{n}@example.com");
        let password = "Load-test-pass1";
        let (status, body) =
            send_preparing(client.post(format!("{base}/api/users")).json(&json!({
                "email": email,
                "password": password,
                "displayName": format!("load{tag}n{n}"),
                "realName": "김부하",
                "phone": format!("010-{tag:04}-{:04}", n % 10_000),
                "city": "서울",
                "detailAddress": "강남구 1"
            })))
            .await?;
        // The tag is fresh per run, so a 409 can only be this buyer's own retried sign-up that
        // went through before its answer was lost.
        anyhow::ensure!(
            status == 201 || status == 409,
            "sign-up answered {status}: {body}"
        );
        let (status, tokens) = send_preparing(
            client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": email, "password": password})),
        )
        .await?;
        anyhow::ensure!(status == 200, "login answered {status}: {tokens}");
        let token = tokens["accessToken"]
            .as_str()
            .context("no accessToken in the login answer")?
            .to_owned();
        let item = n % self.items + 1;
        let (status, order) = send_preparing(
            client
                .post(format!("{base}/api/orders"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("load-order-{tag}-{n}"))
                .json(&json!({
                    "lines": [{"itemId": item, "quantity": 1}],
                    "fromCart": false,
                    "receiver": {"name": "김수령", "phone": "010-1234-5678", "city": "서울", "detailAddress": "강남구 1"}
                })),
        )
        .await?;
        anyhow::ensure!(status == 201, "order answered {status}: {order}");
        let order_id = order["orderId"].as_i64().context("no orderId")?;
        let (status, ready) = send_preparing(
            client
                .post(format!("{base}/api/payments/orders/{order_id}/ready"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("load-ready-{tag}-{n}"))
                .json(&json!({})),
        )
        .await?;
        anyhow::ensure!(status == 200, "ready answered {status}: {ready}");
        let page = ready["nextRedirectPcUrl"]
            .as_str()
            .context("no nextRedirectPcUrl in the ready answer")?
            .to_owned();
        Ok(Buyer {
            client,
            token,
            order_id,
            page,
        })
    }

    /// `count` buyers, `concurrency` at a time, numbered from 0; the first failure stops it.
    async fn buyers(&self, count: u32, concurrency: usize) -> anyhow::Result<Vec<Buyer>> {
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for n in 0..count {
            let shop = self.clone();
            let gate = gate.clone();
            tasks.spawn(async move {
                let _slot = gate.acquire_owned().await?;
                shop.buyer(n)
                    .await
                    .with_context(|| format!("preparing buyer {n}"))
            });
        }
        let mut buyers = Vec::with_capacity(count as usize);
        while let Some(done) = tasks.join_next().await {
            buyers.push(done.context("a preparing task panicked")??);
        }
        buyers.sort_by_key(|buyer| buyer.order_id);
        Ok(buyers)
    }
}

impl Buyer {
    /// The sandbox's page with `auto=approve`: answers the gateway approve URL it redirects to.
    async fn approve_on_page(&self) -> anyhow::Result<String> {
        let separator = if self.page.contains('?') { '&' } else { '?' };
        let response = self
            .client
            .get(format!("{}{separator}auto=approve", self.page))
            .send()
            .await
            .context("the sandbox page")?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let _ = response.bytes().await;
        match location {
            Some(location) if status.as_u16() == 302 => Ok(location),
            _ => anyhow::bail!("the sandbox page answered {status} without a redirect"),
        }
    }

    /// The gateway's approve route, asking for JSON; `Ok` only for 200 with an APPROVED payment.
    async fn approve(&self, url: &str) -> Result<(), String> {
        let response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| describe_send_error(&error))?;
        let status = response.status().as_u16();
        let body: Value = response
            .bytes()
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        if status == 200 && body["payment"]["status"] == "APPROVED" {
            Ok(())
        } else {
            let code = body["code"].as_str().unwrap_or("-");
            Err(format!("{status} {code}"))
        }
    }
}

/// Sends and reads a JSON answer (`Null` when the body is not JSON).
async fn send_json(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Preparation is not what is measured, and on a busy 2-core machine a service can shed a
/// sign-up (503, its database pool timed out): such answers and broken connections are tried
/// again, a few times with a growing pause. Orders and readies carry Idempotency-Keys, so a
/// repeat never makes a second one.
async fn send_preparing(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    const ATTEMPTS: u32 = 6;
    let mut attempt = 1;
    loop {
        let copy = request
            .try_clone()
            .context("a request body that cannot be repeated")?;
        let answer = send_json(copy).await;
        if attempt == ATTEMPTS || matches!(answer, Ok((status, _)) if status != 503) {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(500) * attempt).await;
        attempt += 1;
    }
}

fn describe_send_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "client timeout".into()
    } else if error.is_connect() {
        "connect error".into()
    } else {
        "transport error".into()
    }
}

/// `scheme://host:port` of a URL.
fn origin_of(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    let host = parsed.host_str().context("a URL without a host")?;
    Ok(match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

/// Installs the sandbox's faults (`POST /sandbox/faults` replaces all of them).
async fn set_faults(sandbox: &str, faults: &Value) -> anyhow::Result<()> {
    let (status, body) = send_json(
        reqwest::Client::new()
            .post(format!("{sandbox}/sandbox/faults"))
            .json(faults),
    )
    .await
    .context("POST /sandbox/faults")?;
    anyhow::ensure!(
        status == 200,
        "the sandbox refused the faults: {status} {body}"
    );
    Ok(())
}

async fn clear_faults(sandbox: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .delete(format!("{sandbox}/sandbox/faults"))
        .send()
        .await
        .context("DELETE /sandbox/faults")?;
    anyhow::ensure!(
        response.status().is_success(),
        "the sandbox answered {} to DELETE /sandbox/faults",
        response.status()
    );
    Ok(())
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes, 3 significant digits, as the open loop keeps.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

// ---- payment-approve ------------------------------------------------------------------------

pub async fn approve(args: ApproveArgs) -> ExitCode {
    match run_approve(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("pillivery-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One approval's times.
struct Approval {
    /// When the request was sent (right after the barrier let this task go); the earliest of
    /// these is the release, and the distance to it is the client's own scheduling of 1 000
    /// tasks on 2 cores.
    sent: Option<Instant>,
    /// Due time → answer read (with no `--rate`, due is when it was sent): what the SPEC
    /// bounds.
    latency: Duration,
    outcome: Result<(), String>,
}

async fn run_approve(args: &ApproveArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.approvals > 0, "--approvals must be at least 1");
    let shop = Shop::new(
        &args.host,
        Duration::from_secs(args.timeout_seconds),
        args.items,
    );
    println!(
        "payment-approve: preparing {} buyers (sign-up, login, order, ready), {} at a time; load average {}",
        args.approvals,
        args.prepare_concurrency,
        load_average()
    );
    let prepared = Instant::now();
    let buyers = shop
        .buyers(args.approvals, args.prepare_concurrency)
        .await?;
    println!("  prepared in {:.1} s", prepared.elapsed().as_secs_f64());
    let sandbox = match &args.sandbox {
        Some(origin) => origin.trim_end_matches('/').to_owned(),
        None => origin_of(&buyers[0].page)?,
    };
    // Only `approve` is slowed: it is the one PG call of the approve route, and the readies
    // above and the ledger read below stay fast.
    set_faults(
        &sandbox,
        &json!({"latency_min_ms": args.pg_latency_ms, "endpoints": ["approve"]}),
    )
    .await?;
    println!(
        "  sandbox {sandbox}: approve latency {} ms; firing {} approvals at once; load average {}",
        args.pg_latency_ms,
        buyers.len(),
        load_average()
    );

    let outcome = fire_approvals(buyers, args.rate).await;
    // The faults go whatever happened, so the fleet is left as found.
    let cleared = clear_faults(&sandbox).await;
    let (orders, approvals, page_hops, wall, peak) = outcome?;
    cleared?;
    let charged = charges_of(&sandbox, &orders).await?;
    if let Some(url) = &args.payment_metrics {
        print_server_view(url).await;
    }
    Ok(report_approvals(
        args, &approvals, &page_hops, wall, peak, &orders, charged,
    ))
}

type Fired = (HashSet<i64>, Vec<Approval>, Histogram<u64>, Duration, usize);

/// Every buyer approves on the page, then all approve at the gateway at once.
async fn fire_approvals(buyers: Vec<Buyer>, rate: f64) -> anyhow::Result<Fired> {
    let orders: HashSet<i64> = buyers.iter().map(|buyer| buyer.order_id).collect();
    let barrier = Arc::new(Barrier::new(buyers.len() + 1));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let spacing = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::ZERO
    };
    let mut tasks = JoinSet::new();
    for (index, buyer) in buyers.into_iter().enumerate() {
        let barrier = barrier.clone();
        let in_flight = in_flight.clone();
        let peak = peak.clone();
        tasks.spawn(async move {
            let hop = Instant::now();
            let page = buyer.approve_on_page().await;
            let hop = hop.elapsed();
            // Everyone waits here, even after a failed page, or the barrier would never open.
            barrier.wait().await;
            let url = match page {
                Ok(url) => url,
                Err(error) => {
                    return (
                        hop,
                        Approval {
                            sent: None,
                            latency: Duration::ZERO,
                            outcome: Err(format!("sandbox page: {error:#}")),
                        },
                    );
                }
            };
            // Due times count from this task's own release; the tasks are released within
            // tens of milliseconds of each other (the start lag row), far below the spacing's
            // total at the rates that matter.
            let due = Instant::now() + spacing.mul_f64(index as f64);
            tokio::time::sleep_until(due.into()).await;
            let sent = Instant::now();
            let now_in_flight = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now_in_flight, Ordering::SeqCst);
            let outcome = buyer.approve(&url).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            (
                hop,
                Approval {
                    sent: Some(sent),
                    latency: due.elapsed(),
                    outcome,
                },
            )
        });
    }
    barrier.wait().await;
    let release = Instant::now();
    let mut page_hops = histogram();
    let mut approvals = Vec::with_capacity(orders.len());
    while let Some(done) = tasks.join_next().await {
        let (hop, approval) = done.context("an approving task panicked")?;
        page_hops.saturating_record(micros(hop));
        approvals.push(approval);
    }
    Ok((
        orders,
        approvals,
        page_hops,
        release.elapsed(),
        peak.load(Ordering::SeqCst),
    ))
}

/// The server side's quantiles of the approve: the PG call as the payment service timed it and
/// the route as the gateway timed it (both summaries over the metrics' recent window).
async fn print_server_view(url: &str) {
    let text = match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => {
            eprintln!("pillivery-load: reading {url}: {error}");
            return;
        }
    };
    println!();
    println!("  server view ({url}):");
    for series in [
        "pillivery_pg_call_seconds{path=\"/online/v1/payment/approve\",quantile=",
        "pillivery_http_request_duration_seconds{route=\"/api/payments/orders/{p0}/approve\",quantile=",
        "pillivery_bulkhead_rejected_total",
    ] {
        for line in text.lines().filter(|line| line.starts_with(series)) {
            println!("    {line}");
        }
    }
}

/// Charges in the sandbox's ledger for these orders (`partner_order_id = order-{id}`).
async fn charges_of(sandbox: &str, orders: &HashSet<i64>) -> anyhow::Result<usize> {
    let (status, ledger) = send_json(reqwest::Client::new().get(format!(
        "{sandbox}/sandbox/ledger?kind=charge&cid=TC0ONETIME"
    )))
    .await
    .context("GET /sandbox/ledger")?;
    anyhow::ensure!(status == 200, "the ledger answered {status}");
    let entries = ledger["entries"].as_array().context("no ledger entries")?;
    Ok(entries
        .iter()
        .filter_map(|entry| entry["partner_order_id"].as_str())
        .filter_map(|id| id.strip_prefix("order-")?.parse::<i64>().ok())
        .filter(|id| orders.contains(id))
        .count())
}

fn report_approvals(
    args: &ApproveArgs,
    approvals: &[Approval],
    page_hops: &Histogram<u64>,
    wall: Duration,
    peak: usize,
    orders: &HashSet<i64>,
    charged: usize,
) -> bool {
    let pg_us = args.pg_latency_ms * 1_000;
    let mut latency = histogram();
    let mut lag = histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let release = approvals.iter().filter_map(|approval| approval.sent).min();
    for approval in approvals {
        match &approval.outcome {
            Ok(()) => {
                latency.saturating_record(micros(approval.latency));
                if let (Some(sent), Some(release)) = (approval.sent, release) {
                    lag.saturating_record(micros(sent.saturating_duration_since(release)));
                }
            }
            Err(kind) => *errors.entry(kind.clone()).or_default() += 1,
        }
    }
    let failed: u64 = errors.values().sum();
    let overhead = |us: u64| us.saturating_sub(pg_us);
    let over_budget = approvals
        .iter()
        .filter(|approval| approval.outcome.is_ok())
        .filter(|approval| micros(approval.latency) > pg_us + args.max_overhead_ms * 1_000)
        .count();

    println!();
    println!(
        "payment-approve: {} approvals {}, PG approve latency {} ms, at most {peak} in flight; load average {}",
        approvals.len(),
        if args.rate > 0.0 {
            format!("at {}/s", args.rate)
        } else {
            "at once".to_owned()
        },
        args.pg_latency_ms,
        load_average()
    );
    println!(
        "  all answered {:.3} s after the release; errors {failed}{}",
        wall.as_secs_f64(),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" ({errors:?})")
        }
    );
    println!(
        "  ledger: {charged} charges for {} orders{}",
        orders.len(),
        if charged == orders.len() {
            ""
        } else {
            "  <-- expected one each"
        }
    );
    println!();
    println!("| measure | n | min ms | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let line = |name: &str, histogram: &Histogram<u64>, shift: &dyn Fn(u64) -> u64| {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            histogram.len(),
            ms(shift(histogram.min())),
            ms(shift(histogram.value_at_quantile(0.50))),
            ms(shift(histogram.value_at_quantile(0.90))),
            ms(shift(histogram.value_at_quantile(0.99))),
            ms(shift(histogram.max())),
        );
    };
    if !latency.is_empty() {
        line("approve (due → answer)", &latency, &|us| us);
        line("approve − PG latency", &latency, &overhead);
        line("client start lag (release → sent)", &lag, &|us| us);
    }
    line("sandbox page hop (before the release)", page_hops, &|us| us);
    println!();
    let p99_overhead = if latency.is_empty() {
        u64::MAX
    } else {
        overhead(latency.value_at_quantile(0.99))
    };
    let within = p99_overhead <= args.max_overhead_ms * 1_000;
    println!(
        "  over PG + {} ms: {over_budget} of {}; p99 overhead {} ms: {}",
        args.max_overhead_ms,
        latency.len(),
        if latency.is_empty() {
            "-".into()
        } else {
            ms(p99_overhead)
        },
        if within { "within" } else { "OVER" }
    );
    if let Some(path) = &args.summary {
        let mode = format!(
            "{} {}, PG {} ms, peak {peak} in flight",
            approvals.len(),
            if args.rate > 0.0 {
                format!("at {}/s", args.rate)
            } else {
                "at once".to_owned()
            },
            args.pg_latency_ms
        );
        let row = Row {
            label: args.label.clone(),
            scenario: "payment-approve".into(),
            mode,
            route: "approve".into(),
            requests: approvals.len() as u64,
            errors: failed,
            throughput: latency.len() as f64 / wall.as_secs_f64().max(f64::EPSILON),
            p50_us: latency.value_at_quantile(0.50),
            p95_us: latency.value_at_quantile(0.95),
            p99_us: latency.value_at_quantile(0.99),
            max_us: latency.max(),
        };
        if let Err(error) = summary::append(path, &[row]) {
            eprintln!("pillivery-load: writing {}: {error}", path.display());
            return false;
        }
    }
    failed == 0 && charged == orders.len() && within
}

// ---- breaker --------------------------------------------------------------------------------

pub async fn breaker(args: BreakerArgs) -> ExitCode {
    match run_breaker(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("pillivery-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Lookup,
    Browse,
}

/// What a payment lookup answered.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Answer {
    /// 200 with the PG's live view.
    PgAnswered,
    /// 200 with `pg: null`: the PG failed, timed out, or the breaker did not let the call out.
    PgMissing,
    /// Anything else (browse: any non-2xx).
    Error,
    /// 2xx browsing.
    Ok,
}

struct Sample {
    kind: Kind,
    /// When it was due, since the run's start (open loop: latency counts from here).
    due: Duration,
    latency: Duration,
    answer: Answer,
}

/// One read of the payment service's `/metrics` and the sandbox's fault state.
struct Scrape {
    at: Duration,
    /// `pillivery_circuit_breaker_state{breaker="pg"}`: 0 closed, 1 open, 2 half-open.
    state: Option<u8>,
    /// `pillivery_circuit_breaker_rejected_total{breaker="pg"}`: calls that never left.
    rejected: Option<f64>,
    /// The sandbox's 5xx rate at that moment (the ramp's current value).
    pg_error_rate: Option<f64>,
}

fn state_name(state: Option<u8>) -> &'static str {
    match state {
        Some(0) => "closed",
        Some(1) => "open",
        Some(2) => "half-open",
        _ => "?",
    }
}

/// The value of `name{breaker="pg"...}` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.starts_with('{') && rest.contains("breaker=\"pg\"")).then_some(value)
        })
        .find_map(|value| value.parse().ok())
}

async fn run_breaker(args: &BreakerArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.lookup_rate > 0.0 && args.browse_rate > 0.0,
        "rates must be positive"
    );
    anyhow::ensure!(args.buyers > 0, "--buyers must be at least 1");
    let timeout = Duration::from_secs(args.timeout_seconds);
    let shop = Shop::new(&args.host, timeout, args.items);
    println!(
        "breaker: preparing {} buyers with paid orders; load average {}",
        args.buyers,
        load_average()
    );
    let buyers = shop.buyers(args.buyers, 8).await?;
    let sandbox = match &args.sandbox {
        Some(origin) => origin.trim_end_matches('/').to_owned(),
        None => origin_of(&buyers[0].page)?,
    };
    // Whatever an earlier run left installed would skew the baseline.
    clear_faults(&sandbox).await?;
    for buyer in &buyers {
        let url = buyer.approve_on_page().await?;
        buyer
            .approve(&url)
            .await
            .map_err(|error| anyhow::anyhow!("approving order {}: {error}", buyer.order_id))?;
    }
    let metrics_client = reqwest::Client::builder().timeout(timeout).build()?;
    let first = metrics_client
        .get(&args.payment_metrics)
        .send()
        .await
        .context("reading --payment-metrics")?
        .text()
        .await?;
    anyhow::ensure!(
        metric(&first, "pillivery_circuit_breaker_state").is_some(),
        "{} shows no pillivery_circuit_breaker_state{{breaker=\"pg\"}}: is it the payment service's admin port?",
        args.payment_metrics
    );

    let baseline = Duration::from_secs(args.baseline_seconds);
    let faults_on = baseline;
    let faults_off = faults_on + Duration::from_secs(args.ramp_seconds + args.hold_seconds);
    let end = faults_off + Duration::from_secs(args.recovery_seconds);
    println!(
        "  sandbox {sandbox}; {} lookups/s and {} browse/s for {} s: faults from {} s (0 → {:.0} % 5xx over {} s, {} ms latency, held {} s), removed at {} s; load average {}",
        args.lookup_rate,
        args.browse_rate,
        end.as_secs(),
        faults_on.as_secs(),
        args.to_rate * 100.0,
        args.ramp_seconds,
        args.fault_latency_ms,
        args.hold_seconds,
        faults_off.as_secs(),
        load_average()
    );

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let buyers = Arc::new(buyers);
    let lookups = tokio::spawn(send_lookups(
        buyers.clone(),
        shop.base.clone(),
        args.lookup_rate,
        start,
        end,
        samples.clone(),
    ));
    let browse_clients = (0..16)
        .map(|index| {
            let mut builder = reqwest::Client::builder()
                .timeout(timeout)
                .user_agent("pillivery-load")
                .no_gzip();
            if shop.loopback {
                builder = builder.local_address(loopback_source(index));
            }
            builder.build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let browsing = tokio::spawn(send_browsing(
        browse_clients,
        shop.base.clone(),
        Arc::new(Plan {
            scenario: Scenario::Browse,
            items: args.items,
            client_ips: 256,
        }),
        args.browse_rate,
        start,
        end,
        samples.clone(),
    ));
    let scraping = tokio::spawn(scrape(
        metrics_client.clone(),
        args.payment_metrics.clone(),
        sandbox.clone(),
        Duration::from_millis(args.scrape_ms.max(10)),
        start,
        end + Duration::from_millis(500),
    ));

    tokio::time::sleep_until(start + faults_on).await;
    let ramp = json!({
        "ramp": {
            "from_rate": 0.0,
            "to_rate": args.to_rate,
            "over_seconds": args.ramp_seconds
        },
        "latency_min_ms": args.fault_latency_ms
    });
    let installed = set_faults(&sandbox, &ramp).await;
    if installed.is_ok() {
        tokio::time::sleep_until(start + faults_off).await;
    }
    // Removed on every path, so an aborted run leaves a healthy PG behind.
    let removed = clear_faults(&sandbox).await;
    installed?;
    removed?;
    let scrapes = async {
        lookups.await?;
        browsing.await?;
        scraping.await
    }
    .await
    .context("a sending task panicked")?;
    let samples = std::mem::take(
        &mut *samples
            .lock()
            .map_err(|_| anyhow::anyhow!("samples poisoned"))?,
    );
    Ok(report_breaker(
        args, &samples, &scrapes, faults_on, faults_off, end,
    ))
}

/// Payment lookups at `rate`, round robin over the buyers, until `end` (since `start`).
async fn send_lookups(
    buyers: Arc<Vec<Buyer>>,
    base: String,
    rate: f64,
    start: tokio::time::Instant,
    end: Duration,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = JoinSet::new();
    for index in 0u64.. {
        let due = interval.mul_f64(index as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(start + due).await;
        let buyers = buyers.clone();
        let samples = samples.clone();
        let url = {
            let buyer = &buyers[(index % buyers.len() as u64) as usize];
            format!("{base}/api/payments/orders/{}", buyer.order_id)
        };
        tasks.spawn(async move {
            let buyer = &buyers[(index % buyers.len() as u64) as usize];
            let answer = match send_json(buyer.client.get(&url).bearer_auth(&buyer.token)).await {
                Ok((200, body)) if body["pg"].is_object() => Answer::PgAnswered,
                Ok((200, _)) => Answer::PgMissing,
                _ => Answer::Error,
            };
            let latency = tokio::time::Instant::now().saturating_duration_since(start + due);
            if let Ok(mut samples) = samples.lock() {
                samples.push(Sample {
                    kind: Kind::Lookup,
                    due,
                    latency,
                    answer,
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The `browse` mix at `rate` until `end` (since `start`).
async fn send_browsing(
    clients: Vec<reqwest::Client>,
    base: String,
    plan: Arc<Plan>,
    rate: f64,
    start: tokio::time::Instant,
    end: Duration,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = JoinSet::new();
    for index in 0u64.. {
        let due = interval.mul_f64(index as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(start + due).await;
        let target = plan.next(&mut rand::rng());
        let client = clients[(index % clients.len() as u64) as usize].clone();
        let url = format!("{base}{}", target.path);
        let samples = samples.clone();
        tasks.spawn(async move {
            let ok = match client.get(&url).send().await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            let latency = tokio::time::Instant::now().saturating_duration_since(start + due);
            if let Ok(mut samples) = samples.lock() {
                samples.push(Sample {
                    kind: Kind::Browse,
                    due,
                    latency,
                    answer: if ok { Answer::Ok } else { Answer::Error },
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads the breaker's metrics and the sandbox's fault state every `every` until `end`.
async fn scrape(
    client: reqwest::Client,
    metrics_url: String,
    sandbox: String,
    every: Duration,
    start: tokio::time::Instant,
    end: Duration,
) -> Vec<Scrape> {
    let mut scrapes = Vec::new();
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let at = tick.tick().await.saturating_duration_since(start);
        if at >= end {
            return scrapes;
        }
        let text = match client.get(&metrics_url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let pg_error_rate = match send_json(client.get(format!("{sandbox}/sandbox/faults"))).await {
            Ok((200, body)) => body["current_server_error_rate"].as_f64(),
            _ => None,
        };
        scrapes.push(Scrape {
            at,
            state: metric(&text, "pillivery_circuit_breaker_state").map(|value| value as u8),
            rejected: metric(&text, "pillivery_circuit_breaker_rejected_total"),
            pg_error_rate,
        });
    }
}

/// Percentiles of some samples: `n, p50, p99, max` in µs.
fn percentiles<'a>(samples: impl Iterator<Item = &'a Sample>) -> (u64, u64, u64, u64) {
    let mut histogram = histogram();
    for sample in samples {
        histogram.saturating_record(micros(sample.latency));
    }
    if histogram.is_empty() {
        return (0, 0, 0, 0);
    }
    (
        histogram.len(),
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.max(),
    )
}

/// The breaker state the latest scrape before `at` saw.
fn state_at(scrapes: &[Scrape], at: Duration) -> Option<u8> {
    let index = scrapes.partition_point(|scrape| scrape.at <= at);
    index.checked_sub(1).and_then(|index| scrapes[index].state)
}

fn report_breaker(
    args: &BreakerArgs,
    samples: &[Sample],
    scrapes: &[Scrape],
    faults_on: Duration,
    faults_off: Duration,
    end: Duration,
) -> bool {
    println!();
    println!(
        "breaker: {} lookups/s, {} browse/s; ramp 0 → {:.0} % over {} s from {} s with {} ms PG latency, removed at {} s; load average {}",
        args.lookup_rate,
        args.browse_rate,
        args.to_rate * 100.0,
        args.ramp_seconds,
        faults_on.as_secs(),
        args.fault_latency_ms,
        faults_off.as_secs(),
        load_average()
    );

    // Transitions as the scrapes saw them.
    println!();
    println!("| t s | breaker | sandbox 5xx rate |");
    println!("|---:|---|---:|");
    let mut last = None;
    let mut opened_at = None;
    let mut closed_after = None;
    for scrape in scrapes {
        if scrape.state != last {
            println!(
                "| {:.1} | {} | {} |",
                scrape.at.as_secs_f64(),
                state_name(scrape.state),
                scrape
                    .pg_error_rate
                    .map_or("?".into(), |rate| format!("{:.0} %", rate * 100.0))
            );
            if scrape.state == Some(1) && opened_at.is_none() {
                opened_at = Some(scrape.at);
            }
            if scrape.state == Some(0) && scrape.at > faults_off {
                closed_after = Some(scrape.at);
            }
            last = scrape.state;
        }
    }
    let rejected = |scrapes: &[Scrape]| {
        let first = scrapes.iter().find_map(|scrape| scrape.rejected);
        let last = scrapes.iter().rev().find_map(|scrape| scrape.rejected);
        match (first, last) {
            (Some(first), Some(last)) => last - first,
            (None, Some(last)) => last,
            _ => 0.0,
        }
    };
    println!();
    println!(
        "  calls the open breaker refused (pillivery_circuit_breaker_rejected_total delta): {:.0}",
        rejected(scrapes)
    );

    // Per phase.
    let phases = [
        ("baseline (no faults)", Duration::ZERO, faults_on),
        ("ramp + hold", faults_on, faults_off),
        ("recovery (faults removed)", faults_off, end),
    ];
    println!();
    println!("| phase | route | n | PG answered | pg null | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut browse_errors = 0;
    for (name, from, to) in phases {
        for kind in [Kind::Lookup, Kind::Browse] {
            let chosen: Vec<&Sample> = samples
                .iter()
                .filter(|sample| sample.kind == kind && sample.due >= from && sample.due < to)
                .collect();
            let count = |answer| chosen.iter().filter(|s| s.answer == answer).count();
            let (n, p50, p99, max) = percentiles(chosen.iter().copied());
            let errors = count(Answer::Error);
            if kind == Kind::Browse {
                browse_errors += errors;
            }
            let (answered, missing) = match kind {
                Kind::Lookup => (
                    count(Answer::PgAnswered).to_string(),
                    count(Answer::PgMissing).to_string(),
                ),
                Kind::Browse => ("-".into(), "-".into()),
            };
            println!(
                "| {name} | {} | {n} | {answered} | {missing} | {errors} | {} | {} | {} |",
                match kind {
                    Kind::Lookup => "payment lookup",
                    Kind::Browse => "catalog browse",
                },
                ms(p50),
                ms(p99),
                ms(max)
            );
        }
    }

    // Lookups by the breaker state when they were sent.
    println!();
    println!(
        "| payment lookups sent while the breaker was | answer | n | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for state in [Some(0u8), Some(1), Some(2)] {
        for answer in [Answer::PgAnswered, Answer::PgMissing, Answer::Error] {
            let (n, p50, p99, max) = percentiles(samples.iter().filter(|sample| {
                sample.kind == Kind::Lookup
                    && sample.answer == answer
                    && state_at(scrapes, sample.due) == state
            }));
            if n > 0 {
                println!(
                    "| {} | {} | {n} | {} | {} | {} |",
                    state_name(state),
                    match answer {
                        Answer::PgAnswered => "PG answered",
                        Answer::PgMissing => "pg null",
                        _ => "error",
                    },
                    ms(p50),
                    ms(p99),
                    ms(max)
                );
            }
        }
    }

    // Timeline.
    let bucket = Duration::from_secs(args.bucket_seconds.max(1));
    println!();
    println!(
        "| t s | sandbox 5xx | breaker | lookups | pg null | lookup p50 ms | lookup p99 ms | browse | browse p50 ms | browse p99 ms |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut from = Duration::ZERO;
    while from < end {
        let to = (from + bucket).min(end);
        let inside = |sample: &&Sample| sample.due >= from && sample.due < to;
        let lookups: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.kind == Kind::Lookup)
            .filter(inside)
            .collect();
        let browse = samples
            .iter()
            .filter(|s| s.kind == Kind::Browse)
            .filter(inside);
        let missing = lookups
            .iter()
            .filter(|s| s.answer != Answer::PgAnswered)
            .count();
        let (n, p50, p99, _) = percentiles(lookups.iter().copied());
        let (bn, bp50, bp99, _) = percentiles(browse);
        let window: Vec<&Scrape> = scrapes
            .iter()
            .filter(|scrape| scrape.at >= from && scrape.at < to)
            .collect();
        let mut states: Vec<&str> = Vec::new();
        for scrape in &window {
            let name = state_name(scrape.state);
            if states.last() != Some(&name) {
                states.push(name);
            }
        }
        let rate = window
            .iter()
            .rev()
            .find_map(|scrape| scrape.pg_error_rate)
            .map_or("?".into(), |rate| format!("{:.0} %", rate * 100.0));
        println!(
            "| {}–{} | {rate} | {} | {n} | {missing} | {} | {} | {bn} | {} | {} |",
            from.as_secs(),
            to.as_secs(),
            states.join(" → "),
            ms(p50),
            ms(p99),
            ms(bp50),
            ms(bp99)
        );
        from = to;
    }

    println!();
    let opened = opened_at.is_some();
    let closed =
        closed_after.is_some() && scrapes.last().and_then(|scrape| scrape.state) == Some(0);
    println!(
        "  breaker opened: {}; closed again after the faults were removed: {}; browse errors: {browse_errors}",
        opened_at.map_or("no".into(), |at| format!(
            "yes, at {:.1} s",
            at.as_secs_f64()
        )),
        closed_after
            .filter(|_| closed)
            .map_or("no".into(), |at| format!(
                "yes, at {:.1} s ({:.1} s after)",
                at.as_secs_f64(),
                (at - faults_off).as_secs_f64()
            )),
    );
    opened && closed && browse_errors == 0
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn reads_the_pg_breaker_from_prometheus_text() {
        let text = "# TYPE pillivery_circuit_breaker_state gauge\n\
            pillivery_circuit_breaker_state{breaker=\"catalog\"} 0\n\
            pillivery_circuit_breaker_state{breaker=\"pg\"} 1\n\
            pillivery_circuit_breaker_rejected_total{breaker=\"pg\"} 42\n";
        assert_eq!(metric(text, "pillivery_circuit_breaker_state"), Some(1.0));
        assert_eq!(
            metric(text, "pillivery_circuit_breaker_rejected_total"),
            Some(42.0)
        );
        assert_eq!(
            metric(text, "pillivery_circuit_breaker_transitions_total"),
            None
        );
    }

    #[test]
    fn origins_keep_the_port() {
        assert_eq!(
            origin_of("http://127.0.0.1:41234/checkout/T1?x=1").unwrap(),
            "http://127.0.0.1:41234"
        );
        assert_eq!(
            origin_of("https://pay.example/checkout/T1").unwrap(),
            "https://pay.example"
        );
    }

    #[test]
    fn buyers_take_their_own_source_addresses() {
        // Past the browse clients' and the open loop's (64 by default).
        assert_eq!(
            loopback_source(BUYER_SOURCE_OFFSET),
            IpAddr::from([127, 0, 16, 2])
        );
    }

    #[test]
    fn a_sample_gets_the_state_of_the_scrape_before_it() {
        let scrape = |at_ms, state| Scrape {
            at: Duration::from_millis(at_ms),
            state: Some(state),
            rejected: None,
            pg_error_rate: None,
        };
        let scrapes = [scrape(0, 0), scrape(100, 1), scrape(200, 2)];
        assert_eq!(state_at(&scrapes, Duration::from_millis(50)), Some(0));
        assert_eq!(state_at(&scrapes, Duration::from_millis(150)), Some(1));
        assert_eq!(state_at(&scrapes, Duration::from_millis(900)), Some(2));
    }
}

//! Renewal throughput through the scheduler (SPEC section 11: ≥ 1 000 charges/s against a PG
//! answering in 50 ms).
//!
//! Against a running fleet, over its public API only:
//!
//! 1. **Subscriptions, the real way.** Customers sign up and place orders of `--lines-per-order`
//!    subscription lines (distinct items, all with `--period-days`), each paid through the
//!    payment sandbox's page (`auto=approve`, then the gateway's approve route): one PG key per
//!    order, one subscription per line. Orders go `--setup-concurrency` at a time.
//! 2. **The PG slows down.** The sandbox's origin is taken from the first payment's
//!    `nextRedirectPcUrl` (or `--sandbox`); `POST /sandbox/faults` sets a fixed latency of
//!    `--latency-ms` on every KakaoPay endpoint (no failures).
//! 3. **Renewals.** `POST /api/admin/billing/runs {"asOf": D}` as the administrator, with `D`
//!    the subscriptions' next billing date (every one of them due at once), then `D + period`,
//!    … for `--rounds` rounds. The call answers when the run has finished; charges/s is its
//!    `charged` over the call's wall time (claims, order reads, charges through the payment
//!    service and the sandbox, renewal orders, job writes: everything a renewal costs).
//!
//! The faults are cleared at the end. A fleet keeps its subscriptions, so every invocation
//! creates new customers (a random tag in their emails) and bills from its own date onwards;
//! a fresh `--data-dir` gives the cleanest numbers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::StreamExt as _;
use reqwest::header::LOCATION;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct RenewalOptions {
    pub host: String,
    pub admin_email: String,
    pub admin_password: String,
    /// Subscriptions to create (rounded up to whole orders).
    pub subscriptions: usize,
    /// Subscription lines per order (1–50; the order service's limit is 50).
    pub lines_per_order: usize,
    /// Orders placed by one customer.
    pub orders_per_customer: usize,
    /// Items to pick lines from (ids 1..=items; the fleet seeds 200 by default).
    pub items: usize,
    pub period_days: u32,
    /// Orders being placed and paid at once.
    pub setup_concurrency: usize,
    /// The sandbox's origin; taken from the first payment page when unset.
    pub sandbox: Option<String>,
    pub latency_ms: u64,
    pub rounds: u32,
    /// Waited after the last payment: each subscription's billing job is created from its
    /// SubscriptionCreated event, which trails the payment by a few milliseconds.
    pub settle: Duration,
    pub timeout: Duration,
}

/// One billing run as measured.
struct Round {
    as_of: String,
    answer: Value,
    seconds: f64,
}

async fn send(request: RequestBuilder) -> anyhow::Result<(StatusCode, Option<String>, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await?;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, location, json))
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    Ok(parsed.origin().ascii_serialization())
}

async fn log_in(
    client: &Client,
    host: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (status, _, body) = send(
        client
            .post(format!("{host}/api/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await?;
    ensure!(
        status == StatusCode::OK,
        "login of {email}: {status} {body}"
    );
    body["accessToken"]
        .as_str()
        .map(str::to_owned)
        .context("no accessToken in the login answer")
}

async fn sign_up(client: &Client, host: &str, tag: &str, n: usize) -> anyhow::Result<String> {
    let email = format!("renewals-{tag}-{n}@example.com");
    let (status, _, body) = send(client.post(format!("{host}/api/users")).json(&json!({
        "email": email,
        "password": "secret-pass1",
        "displayName": format!("renew{tag}{n}"),
        "realName": "김정기",
        // Phones are unique per account: the middle block is random per invocation.
        "phone": format!("010-{}-{:04}", phone_block(tag), n % 10_000),
        "city": "서울",
        "detailAddress": "강남구 1"
    })))
    .await?;
    ensure!(status == StatusCode::CREATED, "sign-up: {status} {body}");
    log_in(client, host, &email, "secret-pass1").await
}

/// 1000–9999 from the invocation's tag.
fn phone_block(tag: &str) -> u32 {
    1_000 + u32::from_str_radix(tag, 16).unwrap_or(0) % 9_000
}

/// Places one order of subscription lines and pays it through the sandbox page; answers the
/// payment page's URL.
async fn order_and_pay(
    client: &Client,
    host: &str,
    token: &str,
    key: &str,
    lines: Vec<Value>,
) -> anyhow::Result<String> {
    let (status, _, order) = send(
        client
            .post(format!("{host}/api/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({
                "lines": lines,
                "fromCart": false,
                "receiver": {"name": "김수령", "phone": "010-1234-5678", "city": "서울", "detailAddress": "강남구 1"}
            })),
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "order: {status} {order}");
    let order_id = order["orderId"].as_i64().context("no orderId")?;
    let (status, _, ready) = send(
        client
            .post(format!("{host}/api/payments/orders/{order_id}/ready"))
            .bearer_auth(token)
            .header("Idempotency-Key", format!("ready-{key}"))
            .json(&json!({})),
    )
    .await?;
    ensure!(status == StatusCode::OK, "ready: {status} {ready}");
    let page = ready["nextRedirectPcUrl"]
        .as_str()
        .context("no nextRedirectPcUrl")?
        .to_owned();
    let separator = if page.contains('?') { '&' } else { '?' };
    let (status, approve, _) = send(client.get(format!("{page}{separator}auto=approve"))).await?;
    let approve = approve
        .filter(|_| status == StatusCode::FOUND)
        .with_context(|| format!("the sandbox page answered {status}, not a redirect"))?;
    let (status, _, body) = send(client.get(&approve)).await?;
    ensure!(
        status == StatusCode::FOUND,
        "approve of order {order_id}: {status} {body}"
    );
    Ok(page)
}

pub async fn run(options: &RenewalOptions) -> anyhow::Result<()> {
    ensure!(
        (1..=50).contains(&options.lines_per_order),
        "--lines-per-order must be 1..=50"
    );
    ensure!(
        options.items >= options.lines_per_order,
        "--items must be at least --lines-per-order (lines of an order need distinct items)"
    );
    ensure!(
        (30..=365).contains(&options.period_days),
        "--period-days must be 30..=365"
    );
    let client = Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .build()?;
    let host = options.host.trim_end_matches('/').to_owned();
    let admin = log_in(
        &client,
        &host,
        &options.admin_email,
        &options.admin_password,
    )
    .await
    .context("the administrator's login (--admin-email / --admin-password)")?;

    // 1. Subscriptions.
    let orders = options.subscriptions.div_ceil(options.lines_per_order);
    let customers = orders.div_ceil(options.orders_per_customer.max(1));
    let tag = format!("{:08x}", rand::random::<u32>());
    eprintln!(
        "creating {} subscriptions: {customers} customers, {orders} orders of {} lines, paid through the sandbox",
        orders * options.lines_per_order,
        options.lines_per_order
    );
    let setup = Instant::now();
    let tokens: Vec<String> = futures::stream::iter(0..customers)
        .map(|n| {
            let (client, host, tag) = (client.clone(), host.clone(), tag.clone());
            async move { sign_up(&client, &host, &tag, n).await }
        })
        .buffered(options.setup_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let pages: Vec<String> = futures::stream::iter(0..orders)
        .map(|index| {
            let customer = index / options.orders_per_customer.max(1);
            let token = tokens[customer].clone();
            let lines: Vec<Value> = (0..options.lines_per_order)
                .map(|line| {
                    // Consecutive items from a rotating start: distinct within the order.
                    let item = 1 + (index * 7 + line) % options.items;
                    json!({"itemId": item, "quantity": 1, "periodDays": options.period_days})
                })
                .collect();
            let (client, host) = (client.clone(), host.clone());
            let key = format!("renewals-{tag}-{index}");
            async move { order_and_pay(&client, &host, &token, &key, lines).await }
        })
        .buffer_unordered(options.setup_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let created = orders * options.lines_per_order;
    eprintln!(
        "created {created} subscriptions in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    tokio::time::sleep(options.settle).await;

    // The first billing date: every subscription created here is due on it.
    let (status, _, page) = send(
        client
            .get(format!("{host}/api/subscriptions?page=1&size=1"))
            .bearer_auth(&tokens[0]),
    )
    .await?;
    ensure!(status == StatusCode::OK, "subscriptions: {status} {page}");
    let first_due: chrono::NaiveDate = page["data"][0]["nextBillingDate"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .context("no nextBillingDate")?;

    // 2. The PG's latency.
    let sandbox = match &options.sandbox {
        Some(sandbox) => sandbox.trim_end_matches('/').to_owned(),
        None => origin(pages.first().context("no order was placed")?)?,
    };
    set_faults(
        &client,
        &sandbox,
        json!({"latency_min_ms": options.latency_ms, "latency_max_ms": options.latency_ms}),
    )
    .await?;
    eprintln!(
        "sandbox {sandbox}: {} ms on every KakaoPay call",
        options.latency_ms
    );

    // 3. Renewals, one round per period.
    let mut rounds = Vec::new();
    let mut outcome = Ok(());
    for round in 0..options.rounds {
        let as_of = first_due + chrono::Days::new(u64::from(round * options.period_days));
        let as_of = as_of.to_string();
        let started = Instant::now();
        let answer = send(
            client
                .post(format!("{host}/api/admin/billing/runs"))
                .bearer_auth(&admin)
                .timeout(Duration::from_secs(600))
                .json(&json!({"asOf": as_of})),
        )
        .await;
        let seconds = started.elapsed().as_secs_f64();
        match answer {
            Ok((StatusCode::OK, _, answer)) => {
                let charged = answer["charged"].as_u64().unwrap_or(0);
                eprintln!(
                    "run as of {as_of}: {answer} in {seconds:.2} s = {:.0} charges/s",
                    charged as f64 / seconds
                );
                rounds.push(Round {
                    as_of,
                    answer,
                    seconds,
                });
            }
            Ok((status, _, body)) => {
                outcome = Err(anyhow::anyhow!(
                    "billing run as of {as_of}: {status} {body}"
                ));
                break;
            }
            Err(error) => {
                outcome = Err(error.context(format!("billing run as of {as_of}")));
                break;
            }
        }
    }
    // Whatever happened, the sandbox answers at full speed again.
    let cleared = set_faults(&client, &sandbox, json!({})).await;
    outcome?;
    cleared?;

    println!();
    println!("| run (asOf) | charged | declined | faults | deferred | seconds | charges/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut charged_total = 0;
    let mut seconds_total = 0.0;
    for round in &rounds {
        let count = |name: &str| round.answer[name].as_u64().unwrap_or(0);
        charged_total += count("charged");
        seconds_total += round.seconds;
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.0} |",
            round.as_of,
            count("charged"),
            count("declined"),
            count("faults"),
            count("deferred"),
            round.seconds,
            count("charged") as f64 / round.seconds
        );
    }
    println!(
        "| all | {charged_total} | | | | {seconds_total:.2} | {:.0} |",
        charged_total as f64 / seconds_total
    );
    // Every round bills every subscription created here once (a job whose event came late is
    // caught up by the next round, so the total still adds up); anything else measured
    // something else, e.g. subscriptions of an earlier invocation due the same days.
    for round in &rounds {
        let charged = round.answer["charged"].as_u64().unwrap_or(0) as usize;
        if charged != created {
            eprintln!(
                "warning: the run as of {} charged {charged}, not {created}: raise --settle-ms \
                 (billing jobs still being created from events) or use a fresh fleet",
                round.as_of
            );
        }
    }
    let expected = created as u64 * u64::from(options.rounds);
    if charged_total != expected {
        bail!("the runs charged {charged_total} in all, not {expected}");
    }
    Ok(())
}

async fn set_faults(client: &Client, sandbox: &str, faults: Value) -> anyhow::Result<()> {
    let (status, _, body) = send(
        client
            .post(format!("{sandbox}/sandbox/faults"))
            .json(&faults),
    )
    .await
    .with_context(|| format!("setting the sandbox's faults at {sandbox}"))?;
    ensure!(status.is_success(), "sandbox faults: {status} {body}");
    Ok(())
}

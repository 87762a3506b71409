//! Closed loop on goose: N users, each sending its next request as soon as the last one is
//! answered (no wait time). This measures throughput; its latencies are queueing under a
//! saturating load, which is why SPEC section 11 takes latency from the open loop instead.
//!
//! One goose transaction per route, weighted as the scenario says, named after the route, so
//! goose's own report and the summary break down by route. Each transaction reads the whole
//! body: goose's request metric stops at the response headers, its transaction metric (which
//! the summary uses) at the last byte.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use goose::config::GooseConfiguration;
use goose::goose::{GooseMethod, GooseRequest, Transaction, TransactionError, TransactionFunction};
use goose::prelude::{GooseAttack, GooseMetrics, GooseUser, Scenario as GooseScenario};

use crate::summary::{Row, bucket_quantile};
use crate::targets::{Plan, Route, is_loopback_host, loopback_source};

/// What the command line says about a closed-loop run.
#[derive(Debug, Clone)]
pub struct ClosedOptions {
    pub host: String,
    pub users: usize,
    /// goose time span, e.g. `30s`.
    pub run_time: String,
    pub label: String,
    pub gzip: bool,
    pub timeout: Duration,
    /// More goose options, passed through as given (`--report-file`, `--co-mitigation`, …).
    pub goose_args: Vec<String>,
}

/// Runs the plan's scenario under goose and answers one summary row per route plus `all`.
pub async fn run(plan: Arc<Plan>, options: &ClosedOptions) -> anyhow::Result<Vec<Row>> {
    let mut args: Vec<String> = vec![
        "--host".into(),
        options.host.clone(),
        "--users".into(),
        options.users.to_string(),
        // Every user starts within the first second; goose then resets its metrics, so the
        // ramp is not part of the result.
        "--increase-rate".into(),
        options.users.to_string(),
        "--run-time".into(),
        options.run_time.clone(),
        // goose's controllers listen on fixed ports (5116, 5117); off, so two runs (the
        // fleet's and nginx's, or two engineers') never collide.
        "--no-telnet".into(),
        "--no-websocket".into(),
    ];
    args.extend(options.goose_args.iter().cloned());
    let configuration = GooseConfiguration::parse_args_default(&args)
        .map_err(|error| anyhow::anyhow!("goose options {args:?}: {error:?}"))?;

    let mut scenario = GooseScenario::new(plan.scenario.name());
    scenario = scenario.register_transaction(
        Transaction::new(client_setup(
            &options.host,
            options.gzip,
            options.timeout,
            plan.client_ips,
        ))
        .set_name("client setup")
        .set_on_start(),
    );
    for &(route, weight) in plan.scenario.routes() {
        let transaction = Transaction::new(route_transaction(plan.clone(), route))
            .set_name_for_transaction_and_requests(route.name())
            .set_weight(weight as usize)
            .context("transaction weight")?;
        scenario = scenario.register_transaction(transaction);
    }
    let metrics = GooseAttack::initialize_with_config(configuration)?
        .register_scenario(scenario)
        .execute()
        .await?;
    Ok(rows(&metrics, options))
}

/// Gives each user a client of its own: without gzip unless asked (the nginx baseline serves
/// the plain bytes, so both sides send the same), and on a loopback host bound to its own
/// source address so the embedded gateway counts distinct clients.
fn client_setup(host: &str, gzip: bool, timeout: Duration, client_ips: u32) -> TransactionFunction {
    let loopback = is_loopback_host(host);
    Arc::new(move |user: &mut GooseUser| {
        Box::pin(async move {
            let mut builder = reqwest::Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(1)
                .user_agent("pillivery-load");
            if !gzip {
                builder = builder.no_gzip();
            }
            if loopback {
                let index =
                    u32::try_from(user.weighted_users_index).unwrap_or(0) % client_ips.max(1);
                builder = builder.local_address(loopback_source(index));
            }
            user.set_client_builder(builder).await.map_err(Box::new)
        })
    })
}

/// One request of `route`, body read to the end; a non-2xx answer fails the transaction.
fn route_transaction(plan: Arc<Plan>, route: Route) -> TransactionFunction {
    Arc::new(move |user: &mut GooseUser| {
        // Drawn before any await: the thread's generator must not live across one.
        let target = plan.next_of(route, &mut rand::rng());
        Box::pin(async move {
            let builder = user
                .get_request_builder(&GooseMethod::Get, &target.path)?
                .header("x-forwarded-for", target.client_ip.to_string());
            let request = GooseRequest::builder()
                .name(route.name())
                .set_request_builder(builder)
                .build();
            let answer = user.request(request).await?;
            let response = answer.response.map_err(|error| {
                Box::new(TransactionError::Custom(format!(
                    "{}: {error}",
                    route.name()
                )))
            })?;
            let status = response.status();
            let body = response.bytes().await.map_err(|error| {
                Box::new(TransactionError::Custom(format!(
                    "{}: body: {error}",
                    route.name()
                )))
            })?;
            if !status.is_success() {
                return Err(Box::new(TransactionError::Custom(format!(
                    "{}: {status} ({} bytes)",
                    route.name(),
                    body.len()
                ))));
            }
            Ok(())
        })
    })
}

/// One row per route from goose's transaction metrics (whole responses), plus `all` when the
/// scenario has more than one route.
fn rows(metrics: &GooseMetrics, options: &ClosedOptions) -> Vec<Row> {
    let seconds = metrics.duration.max(1) as f64;
    let mode = format!("closed {} users", options.users);
    let mut rows = Vec::new();
    let mut all_buckets: std::collections::BTreeMap<u64, usize> = Default::default();
    let (mut all_requests, mut all_errors, mut all_max) = (0u64, 0u64, 0u64);
    for aggregate in metrics.transactions.iter().flatten() {
        let name = aggregate.transaction_name.name_for_transaction();
        let times = &aggregate.run_times;
        let requests = (aggregate.success_count + aggregate.fail_count) as u64;
        if name == "client setup" || requests == 0 {
            continue;
        }
        for (time, count) in times.times_us.iter() {
            *all_buckets.entry(*time).or_default() += count;
        }
        all_requests += requests;
        all_errors += aggregate.fail_count as u64;
        all_max = all_max.max(times.maximum_time_us);
        rows.push(Row {
            label: options.label.clone(),
            scenario: aggregate.scenario_name.to_string(),
            mode: mode.clone(),
            route: name.to_owned(),
            requests,
            errors: aggregate.fail_count as u64,
            throughput: (requests - aggregate.fail_count as u64) as f64 / seconds,
            p50_us: bucket_quantile(times.times_us.iter(), 0.50),
            p95_us: bucket_quantile(times.times_us.iter(), 0.95),
            p99_us: bucket_quantile(times.times_us.iter(), 0.99),
            max_us: times.maximum_time_us,
        });
    }
    if rows.len() > 1 {
        let scenario = rows[0].scenario.clone();
        rows.push(Row {
            label: options.label.clone(),
            scenario,
            mode,
            route: "all".into(),
            requests: all_requests,
            errors: all_errors,
            throughput: (all_requests - all_errors) as f64 / seconds,
            p50_us: bucket_quantile(all_buckets.iter(), 0.50),
            p95_us: bucket_quantile(all_buckets.iter(), 0.95),
            p99_us: bucket_quantile(all_buckets.iter(), 0.99),
            max_us: all_max,
        });
    }
    rows
}

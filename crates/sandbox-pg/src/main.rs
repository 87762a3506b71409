//! `pillivery-sandbox-pg`: the KakaoPay-compatible payment sandbox as its own process.
//! Configuration as for every service (`PILLIVERY_CONFIG_FILE`, `PILLIVERY_…`); see
//! `docs/payments.md`.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pillivery_platform::process::run_service("sandbox-pg", pillivery_sandbox_pg::run).await
}

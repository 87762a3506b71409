//! `pillivery-order`: the order service as its own process.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pillivery_platform::process::run_service("order", order::run).await
}

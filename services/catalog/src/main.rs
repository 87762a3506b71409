//! `pillivery-catalog`: the catalog service as its own process.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pillivery_platform::process::run_service("catalog", catalog::run).await
}

//! A KakaoPay-compatible payment sandbox (SPEC section 6, "Payment sandbox"): KakaoPay's online
//! payment endpoints and shapes, a buyer page at `next_redirect_pc_url` with an `auto` hook for
//! headless tests, idempotent `partner_order_id`, a ledger of every charge and cancel, and fault
//! injection (latency, 5xx, timeouts before and after committing, declines, a 5xx ramp) set by
//! configuration or at run time. State lives in memory: it is a sandbox.
//!
//! - [`config`]: [`SandboxConfig`] and [`FaultConfig`].
//! - [`books`]: payments, SIDs, idempotency and the ledger, as plain rules.
//! - [`faults`]: what each call suffers.
//! - [`kakao`]: KakaoPay's request, response and error bodies.
//! - [`checkout`]: the buyer page. `http` (private) wires it all to axum.
//!
//! What the embedded fleet and tests call: [`Sandbox::bind`] (port 0 for a free one), then
//! [`BoundSandbox::base_url`] for the payment service's KakaoPay URL, [`BoundSandbox::sandbox`]
//! for in-process access to the ledger and faults, and [`BoundSandbox::serve`] until shutdown.
#![forbid(unsafe_code)]

pub mod books;
pub mod checkout;
pub mod config;
pub mod faults;
mod http;
pub mod kakao;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pillivery_platform::shutdown::Shutdown;
use tokio::net::TcpListener;

pub use crate::books::{
    EntryKind, Ledger, LedgerEntry, LedgerFilter, SidStatus, SubscriptionFilter, SubscriptionRecord,
};
pub use crate::config::{
    DEFAULT_SECRET_KEY, Endpoint, EndpointSet, FaultConfig, ONE_TIME_CID, RampConfig,
    SUBSCRIPTION_CID, SandboxConfig,
};
pub use crate::faults::FaultStatus;

use crate::books::{Books, BooksSettings};
use crate::faults::Faults;
use crate::http::App;

/// After shutdown, in-flight calls get this long to finish before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// A handle on a sandbox's state: the ledger, the SIDs and the faults, without going through
/// HTTP. Cheap to clone; valid while the sandbox lives and after it stopped.
#[derive(Clone)]
pub struct Sandbox {
    app: Arc<App>,
}

impl Sandbox {
    /// Validates `config` and binds its address; nothing is served until
    /// [`BoundSandbox::serve`].
    pub async fn bind(config: SandboxConfig) -> Result<BoundSandbox, SandboxError> {
        config.validate().map_err(SandboxError::Config)?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen_addr,
            source,
        })?;
        let base_url = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(addr)),
        };
        let books = Books::new(BooksSettings {
            one_time_cid: config.one_time_cid.clone(),
            subscription_cid: config.subscription_cid.clone(),
            public_url: base_url.clone(),
            ready_ttl: chrono::Duration::seconds(
                i64::try_from(config.ready_ttl_seconds).unwrap_or(i64::MAX),
            ),
        });
        let app = App::new(
            books,
            Faults::new(config.faults.clone()),
            config.secret_key_list(),
        );
        Ok(BoundSandbox {
            listener,
            addr,
            base_url,
            sandbox: Sandbox { app: Arc::new(app) },
        })
    }

    /// The ledger entries matching `filter` (everything for the default filter).
    pub fn ledger(&self, filter: &LedgerFilter) -> Ledger {
        self.app.books().ledger(filter)
    }

    /// The SIDs matching `filter`.
    pub fn subscriptions(&self, filter: &SubscriptionFilter) -> Vec<SubscriptionRecord> {
        self.app.books().subscriptions(filter)
    }

    /// Replaces the injected faults (as `POST /sandbox/faults` does).
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), String> {
        faults.validate()?;
        self.app.faults.install(faults);
        Ok(())
    }

    /// The injected faults and where their ramp stands.
    pub fn faults(&self) -> FaultStatus {
        self.app.faults.status()
    }
}

/// An unspecified address (`0.0.0.0`, `::`) cannot be dialled; loopback reaches the same socket.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

/// A sandbox with its port bound, not yet serving.
pub struct BoundSandbox {
    listener: TcpListener,
    addr: SocketAddr,
    base_url: String,
    sandbox: Sandbox,
}

impl BoundSandbox {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The origin of KakaoPay's endpoints and of the buyer page, e.g. `http://127.0.0.1:41234`
    /// (`public_url` when configured): what the payment service uses as KakaoPay's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn sandbox(&self) -> Sandbox {
        self.sandbox.clone()
    }

    /// Serves until `shutdown` fires; then releases held calls, lets in-flight calls finish
    /// (at most [`SHUTDOWN_GRACE`]) and returns.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), SandboxError> {
        let app = self.sandbox.app;
        tracing::info!(addr = %self.addr, base_url = %self.base_url, "payment sandbox listening");
        let stop = {
            let app = app.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.wait().await;
                app.release_holds();
            }
        };
        let server = axum::serve(self.listener, http::router(app)).with_graceful_shutdown(stop);
        tokio::select! {
            result = server.into_future() => result.map_err(SandboxError::Serve),
            () = async { shutdown.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!("grace period over; abandoning in-flight sandbox calls");
                Ok(())
            }
        }
    }
}

/// Binds and serves until `shutdown`: the binary's entry point.
pub async fn run(config: SandboxConfig, shutdown: Shutdown) -> Result<(), SandboxError> {
    Sandbox::bind(config).await?.serve(shutdown).await
}

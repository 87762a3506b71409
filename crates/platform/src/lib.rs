//! What every Pillivery service stands on, and nothing domain-specific.
//!
//! - [`config`]: typed configuration from defaults, an optional file and `PILLIVERY_…` variables.
//! - [`telemetry`]: logs, OTLP traces, W3C propagation, Prometheus metrics.
//! - [`server`]: a tonic server with health, reflection, an admin port and graceful shutdown.
//! - [`client`]: gRPC channels to other services with deadline, breaker, bulkhead and retries.
//! - [`resilience`]: the circuit breaker, bulkhead and retry budget those clients use.
//! - [`db`]: database connections by URL (SQLite, PostgreSQL, MySQL) and migrations.
//! - [`events`]: the outbox, the relay to the event bus, consumers with an inbox and dead letters.
//! - [`kv`]: cache, counter, HyperLogLog, rate limiter and lock over Redis or in-process.
//! - [`paging`]: page requests (1-based, size 1..=100, never clamped) and pages with their totals.
//! - [`auth`]: Ed25519 access tokens: issuing, verifying, JWKS, the caller behind a request.
//! - [`error`]: service errors as `tonic::Status` with machine-readable details, and back.
//! - [`shutdown`]: the one signal every task of a process watches.
//! - [`time`]: the clock (real or manual for tests) and the business calendar (dates in the shop's
//!   time zone).
//! - [`process`]: the life of a service binary, from configuration to exit code.
#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod kv;
pub mod paging;
pub mod process;
pub mod resilience;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod time;

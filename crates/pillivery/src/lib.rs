//! The whole fleet in one process: the embedded default a newcomer runs with one command.
//!
//! Every service runs as it does in production — its own loopback ports, real gRPC between them,
//! its own database — only hosted by one process: SQLite files under the data folder (or one
//! schema per service on a PostgreSQL server, or one database per service on MySQL), and
//! in-process stores. Tests start fleets through [`Fleet::start`] with free ports, so several
//! fleets can run side by side.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pillivery_platform::auth::{self, SigningKey};
use pillivery_platform::db::DatabaseConfig;
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::server::{READINESS, ServerConfig, wait_until_serving};
use pillivery_platform::shutdown::Shutdown;
use tokio::task::JoinHandle;

/// The administrator's email when `PILLIVERY_ADMIN_EMAIL` is not set.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@pillivery.local";

/// Where a generated administrator password is kept, so it stays the same across starts.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// The administrator account the fleet makes sure exists.
#[derive(Clone)]
pub struct AdminAccount {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for AdminAccount {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdminAccount")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl AdminAccount {
    /// `password` when given; otherwise the one generated on a first start and kept (mode 0600)
    /// in `data_dir`. The flag says whether the password was generated just now (and should be
    /// shown, once).
    pub fn from_environment(
        email: Option<String>,
        password: Option<String>,
        data_dir: &Path,
    ) -> anyhow::Result<(AdminAccount, bool)> {
        let email = email.unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned());
        if let Some(password) = password {
            return Ok((AdminAccount { email, password }, false));
        }
        let file = data_dir.join(ADMIN_PASSWORD_FILE);
        if let Ok(kept) = std::fs::read_to_string(&file) {
            let password = kept.trim().to_owned();
            return Ok((AdminAccount { email, password }, false));
        }
        std::fs::create_dir_all(data_dir)?;
        let password = generate_password();
        write_private_file(&file, &password)
            .with_context(|| format!("keeping the admin password in {}", file.display()))?;
        Ok((AdminAccount { email, password }, true))
    }
}

/// 20 random letters and digits with one symbol: always satisfies the sign-up rules.
fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut random = rand::rng();
    let mut password: String = (0..18)
        .map(|_| ALPHABET[random.random_range(0..ALPHABET.len())] as char)
        .collect();
    password.push_str("a7-");
    password
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// The development signing key's file in the data folder.
pub const SIGNING_KEY_FILE: &str = "jwt-signing-key.pem";

/// The services of the fleet, in start order (the gateway last: it calls the others).
pub const SERVICES: [&str; 6] = [
    "user",
    "catalog",
    "order",
    "payment",
    "scheduler",
    "gateway",
];

/// Where the services keep their data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `<data_dir>/<service>.db` each.
    Sqlite { data_dir: PathBuf },
    /// One schema per service (`<prefix>_<service>`) in this PostgreSQL database.
    Postgres { url: String, schema_prefix: String },
    /// One database per service (`<prefix>_<service>`) on this MySQL/MariaDB server.
    Mysql {
        url: String,
        database_prefix: String,
    },
}

impl Storage {
    /// Picks the backend from a URL; SQLite when none is given.
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Storage> {
        match url {
            None => Ok(Storage::Sqlite {
                data_dir: data_dir.to_path_buf(),
            }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Storage::Postgres {
                    url: url.to_owned(),
                    schema_prefix: "pillivery".into(),
                })
            }
            Some(url) if url.starts_with("mysql://") => Ok(Storage::Mysql {
                url: url.to_owned(),
                database_prefix: "pillivery".into(),
            }),
            Some(other) => anyhow::bail!(
                "--database-url must be a postgres:// or mysql:// URL (got `{}`)",
                other.split(':').next().unwrap_or_default()
            ),
        }
    }

    fn sqlite_folder(&self) -> Option<&PathBuf> {
        match self {
            Storage::Sqlite { data_dir } => Some(data_dir),
            _ => None,
        }
    }

    async fn database_for(&self, service: &str) -> anyhow::Result<DatabaseConfig> {
        Ok(match self {
            Storage::Sqlite { data_dir } => {
                let path = data_dir.join(format!("{service}.db"));
                DatabaseConfig::new(format!("sqlite://{}?mode=rwc", path.display()))
            }
            Storage::Postgres { url, schema_prefix } => {
                let mut config = DatabaseConfig::new(url.clone());
                config.schema = Some(format!("{schema_prefix}_{service}"));
                config
            }
            Storage::Mysql {
                url,
                database_prefix,
            } => {
                let database = format!("{database_prefix}_{service}");
                let database_url = pillivery_platform::db::create_mysql_database(url, &database)
                    .await
                    .with_context(|| format!("creating MySQL database {database}"))?;
                DatabaseConfig::new(database_url)
            }
        })
    }
}

/// How to start a fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// The gateway's public port on 127.0.0.1; 0 picks a free one.
    pub http_port: u16,
    /// Local state that is not in a database: the development signing key.
    pub data_dir: PathBuf,
    pub storage: Storage,
    /// The access-token signing key (Ed25519 PKCS#8 PEM); when unset, one is generated once and
    /// kept in `data_dir`.
    pub jwt_private_key: Option<String>,
    /// The administrator account ensured at start.
    pub admin: AdminAccount,
    /// OAuth2 providers (none by default: each needs a client registered at the provider).
    pub oauth: user::config::OAuthConfig,
    /// Demo items loaded when the catalog is empty.
    pub demo_items: u32,
    /// How long services may take to become ready.
    pub start_timeout: Duration,
}

impl FleetOptions {
    /// A fleet in `data_dir` with free ports: what tests use.
    pub fn for_tests(data_dir: &Path) -> FleetOptions {
        FleetOptions {
            http_port: 0,
            data_dir: data_dir.to_path_buf(),
            storage: Storage::Sqlite {
                data_dir: data_dir.to_path_buf(),
            },
            jwt_private_key: None,
            admin: AdminAccount {
                email: DEFAULT_ADMIN_EMAIL.to_owned(),
                password: "Admin-test-1".to_owned(),
            },
            oauth: user::config::OAuthConfig::default(),
            demo_items: 200,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// One running service of the fleet.
pub struct RunningService {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: Shutdown,
    /// `None` once it has been awaited (it stopped).
    task: Option<JoinHandle<Result<(), String>>>,
}

/// A running fleet.
pub struct Fleet {
    pub http_addr: SocketAddr,
    /// The payment sandbox's origin (KakaoPay's API and the buyer page).
    pub sandbox_url: String,
    /// The payment sandbox's ledger and faults, in-process.
    pub sandbox: pillivery_sandbox_pg::Sandbox,
    /// The sandbox's server; stopped by the fleet's shutdown and awaited with the services.
    sandbox_task: JoinHandle<Result<(), pillivery_sandbox_pg::SandboxError>>,
    services: BTreeMap<&'static str, RunningService>,
    shutdown: Shutdown,
}

/// Approvals in flight on the gateway → payment and payment → PG edges. Each approval holds a
/// slot on both for the PG's whole answer (the original's test: 2 s), so by Little's law SPEC
/// section 11's 1 000 concurrent approvals need 1 000 slots on each; the defaults (64 and 256)
/// shed the rest with 503 (docs/payments.md, "Load test"). A slot is a semaphore permit and a
/// waiting future, so the limit still bounds a runaway without costing anything below it.
const PAYMENT_IN_FLIGHT: usize = 1_024;

fn payment_edge(
    policy: pillivery_platform::resilience::EdgePolicy,
) -> pillivery_platform::resilience::EdgePolicy {
    pillivery_platform::resilience::EdgePolicy {
        max_concurrent: PAYMENT_IN_FLIGHT,
        ..policy
    }
}

fn loopback_server() -> ServerConfig {
    ServerConfig::loopback()
}

impl Fleet {
    /// Starts every service, waits until each reports ready, and returns.
    pub async fn start(options: FleetOptions) -> anyhow::Result<Fleet> {
        for folder in [Some(&options.data_dir), options.storage.sqlite_folder()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("creating the data folder {}", folder.display()))?;
        }
        let signing_key = match &options.jwt_private_key {
            Some(pem) => SigningKey::from_pkcs8_pem(pem, None)
                .context("PILLIVERY_JWT_PRIVATE_KEY is not an Ed25519 PKCS#8 PEM key")?,
            None => SigningKey::load_or_generate(&options.data_dir.join(SIGNING_KEY_FILE))
                .context("the development signing key")?,
        };
        // One process, so one in-process store serves every service (token blacklist, ...).
        let key_value = KeyValueStore::in_memory();
        // And one in-process event bus: every service's relay publishes to it and every
        // consumer reads from it, with the semantics of Redis Streams (docs/events.md).
        let event_bus = pillivery_platform::events::EventBus::in_memory(
            &pillivery_platform::events::EventsConfig::default(),
        );
        // Installed before any breaker or counter is created, so no early sample is lost.
        let _ = pillivery_platform::telemetry::metrics_handle();
        let shutdown = Shutdown::new();
        let mut services = BTreeMap::new();

        let user = user::BoundUser::bind_with(
            user::UserConfig {
                server: loopback_server(),
                database: options.storage.database_for("user").await?,
                admin_email: options.admin.email.clone(),
                admin_password: Some(options.admin.password.clone()),
                oauth: options.oauth.clone(),
                ..Default::default()
            },
            key_value.clone(),
            signing_key.clone(),
        )
        .await?
        .with_event_bus(event_bus.clone());
        let catalog = catalog::BoundCatalog::bind_with(
            catalog::CatalogConfig {
                server: loopback_server(),
                database: options.storage.database_for("catalog").await?,
                demo_items: options.demo_items,
                jwks: auth::jwks(&[signing_key.verification_key()]).to_string(),
                // Reviews store the author's display name, asked of the user service.
                user: pillivery_platform::client::UpstreamConfig::new(format!(
                    "http://{}",
                    user.grpc_addr()
                )),
                ..Default::default()
            },
            // The list cache's second level, the view sketches and the fold lock.
            key_value.clone(),
        )
        .await?
        .with_event_bus(event_bus.clone());
        let order = order::bind(order::OrderConfig {
            server: loopback_server(),
            database: options.storage.database_for("order").await?,
            catalog: pillivery_platform::client::UpstreamConfig::new(format!(
                "http://{}",
                catalog.grpc_addr()
            )),
            jwks: auth::jwks(&[signing_key.verification_key()]).to_string(),
            ..Default::default()
        })
        .await?
        .with_key_value_store(key_value.clone())
        .with_event_bus(event_bus.clone());
        // The catalog and the order service call each other: the catalog, bound first, learns
        // the order service's address (reviews ask it who bought what) now that it is bound.
        let catalog = catalog.with_order_upstream(pillivery_platform::client::UpstreamConfig::new(
            format!("http://{}", order.grpc_addr()),
        ));
        // The payment sandbox (KakaoPay's API, crates/sandbox-pg) runs in-process; the payment
        // service talks to it over HTTP exactly as it would to KakaoPay.
        let sandbox =
            pillivery_sandbox_pg::Sandbox::bind(pillivery_sandbox_pg::SandboxConfig::loopback())
                .await?;
        let sandbox_url = sandbox.base_url().to_owned();
        let sandbox_handle = sandbox.sandbox();
        let payment = payment::bind(payment::PaymentConfig {
            server: loopback_server(),
            database: options.storage.database_for("payment").await?,
            provider: payment::config::KakaoPayConfig {
                base_url: sandbox_url.clone(),
                secret_key: pillivery_sandbox_pg::DEFAULT_SECRET_KEY.to_owned(),
                edge: payment_edge(payment::config::KakaoPayConfig::default().edge),
                ..Default::default()
            },
            order: pillivery_platform::client::UpstreamConfig::new(format!(
                "http://{}",
                order.grpc_addr()
            )),
            jwks: auth::jwks(&[signing_key.verification_key()]).to_string(),
            ..Default::default()
        })
        .await?
        .with_event_bus(event_bus.clone());
        let scheduler = scheduler::bind(scheduler::SchedulerConfig {
            server: loopback_server(),
            database: options.storage.database_for("scheduler").await?,
            order: pillivery_platform::client::UpstreamConfig::new(format!(
                "http://{}",
                order.grpc_addr()
            )),
            payment: pillivery_platform::client::UpstreamConfig::new(format!(
                "http://{}",
                payment.grpc_addr()
            )),
            jwks: auth::jwks(&[signing_key.verification_key()]).to_string(),
            ..Default::default()
        })
        .await?
        .with_event_bus(event_bus.clone());
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            "catalog".to_owned(),
            gateway::GatewayUpstream::new(
                format!("http://{}", catalog.grpc_addr()),
                &[
                    "pillivery.catalog.v1.CatalogService",
                    "pillivery.catalog.v1.CatalogAdminService",
                    "pillivery.catalog.v1.ReviewService",
                ],
            ),
        );
        upstreams.insert(
            "order".to_owned(),
            gateway::GatewayUpstream::new(
                format!("http://{}", order.grpc_addr()),
                &[
                    "pillivery.order.v1.CartService",
                    "pillivery.order.v1.OrderService",
                    "pillivery.order.v1.SubscriptionService",
                ],
            ),
        );
        upstreams.insert(
            "user".to_owned(),
            gateway::GatewayUpstream::new(
                format!("http://{}", user.grpc_addr()),
                &[
                    "pillivery.user.v1.UserService",
                    "pillivery.user.v1.AuthService",
                    "pillivery.user.v1.OAuthService",
                ],
            ),
        );
        upstreams.insert(
            "payment".to_owned(),
            gateway::GatewayUpstream {
                policy: payment_edge(Default::default()),
                ..gateway::GatewayUpstream::new(
                    format!("http://{}", payment.grpc_addr()),
                    &["pillivery.payment.v1.PaymentService"],
                )
            },
        );
        upstreams.insert(
            "scheduler".to_owned(),
            gateway::GatewayUpstream::new(
                format!("http://{}", scheduler.grpc_addr()),
                &["pillivery.scheduler.v1.SchedulerAdminService"],
            ),
        );
        let gateway = gateway::BoundGateway::bind(gateway::GatewayConfig {
            http_host: [127, 0, 0, 1].into(),
            http_port: options.http_port,
            server: loopback_server(),
            upstreams,
            jwks: auth::jwks(&[signing_key.verification_key()]).to_string(),
            ..Default::default()
        })
        .await?
        .with_key_value_store(key_value.clone());
        let http_addr = gateway.http_addr();
        // The PG sends the buyer back to the gateway's approve / cancel / fail routes.
        let payment = payment.with_public_base_url(format!("http://{http_addr}"));
        let sandbox_task = tokio::spawn(sandbox.serve(shutdown.child()));

        macro_rules! launch {
            ($name:literal, $bound:expr) => {{
                let bound = $bound;
                let own = shutdown.child();
                let grpc_addr = bound.grpc_addr();
                let admin_addr = bound.admin_addr();
                let stop = own.clone();
                let task = tokio::spawn(async move {
                    bound.serve(stop).await.map_err(|error| error.to_string())
                });
                services.insert(
                    $name,
                    RunningService {
                        grpc_addr,
                        admin_addr,
                        shutdown: own,
                        task: Some(task),
                    },
                );
            }};
        }
        launch!("user", user);
        launch!("catalog", catalog);
        launch!("order", order);
        launch!("payment", payment);
        launch!("scheduler", scheduler);
        launch!("gateway", gateway);

        let mut fleet = Fleet {
            http_addr,
            sandbox_url,
            sandbox: sandbox_handle,
            sandbox_task,
            services,
            shutdown,
        };
        for (name, service) in fleet.services.iter_mut() {
            let ready = wait_until_serving(service.grpc_addr, READINESS, options.start_timeout);
            let failure = match service.task.as_mut() {
                Some(task) => tokio::select! {
                    ready = ready => ready.err(),
                    // A service that stops while starting says why, instead of a long wait.
                    outcome = task => {
                        service.task = None;
                        Some(describe_end(outcome))
                    }
                },
                None => Some("not running".to_owned()),
            };
            if let Some(error) = failure {
                fleet.shutdown.trigger();
                anyhow::bail!("{name} did not become ready: {error}");
            }
        }
        Ok(fleet)
    }

    /// A service's addresses, by name (`catalog`, `gateway`, ...).
    pub fn service(&self, name: &str) -> Option<&RunningService> {
        self.services.get(name)
    }

    /// Stops one service (the others keep running) and waits until it has stopped.
    pub async fn stop_service(&mut self, name: &str) -> anyhow::Result<()> {
        let service = self
            .services
            .remove(name)
            .with_context(|| format!("no running service `{name}`"))?;
        service.shutdown.trigger();
        match service.task {
            Some(task) => task
                .await
                .context("service task panicked")?
                .map_err(|error| anyhow::anyhow!("{name}: {error}")),
            None => Ok(()),
        }
    }

    /// Resolves when any service stops on its own (a failure) or `shutdown` fires.
    pub async fn run_until(&mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        let ended = {
            let watches: Vec<_> = self
                .services
                .iter_mut()
                .filter_map(|(name, service)| {
                    let name = *name;
                    service
                        .task
                        .as_mut()
                        .map(|task| Box::pin(async move { (name, task.await) }))
                })
                .collect();
            if watches.is_empty() {
                shutdown.wait().await;
                return Ok(());
            }
            tokio::select! {
                () = shutdown.wait() => None,
                ((name, outcome), _, _) = futures::future::select_all(watches) => Some((name, outcome)),
            }
        };
        match ended {
            None => Ok(()),
            Some((name, outcome)) => {
                // Awaited already: a JoinHandle must not be polled again after completion.
                if let Some(service) = self.services.get_mut(name) {
                    service.task = None;
                }
                anyhow::bail!("{name}: {}", describe_end(outcome))
            }
        }
    }

    /// Stops every service gracefully and waits for all of them.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let mut errors = Vec::new();
        for (name, service) in self.services {
            let Some(task) = service.task else {
                continue;
            };
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => errors.push(format!("{name}: {error}")),
                Err(error) if error.is_cancelled() => {}
                Err(error) => errors.push(format!("{name}: {error}")),
            }
        }
        // After the services: the payment service may still be settling a call with it.
        match self.sandbox_task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => errors.push(format!("payment sandbox: {error}")),
            Err(error) if error.is_cancelled() => {}
            Err(error) => errors.push(format!("payment sandbox: {error}")),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(errors.join("; "))
        }
    }
}

fn describe_end(outcome: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match outcome {
        Ok(Ok(())) => "stopped unexpectedly".to_owned(),
        Ok(Err(error)) => format!("failed: {error}"),
        Err(error) => format!("panicked: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_chosen_by_url() {
        let dir = Path::new("./data");
        assert!(matches!(
            Storage::from_url(None, dir),
            Ok(Storage::Sqlite { .. })
        ));
        assert!(matches!(
            Storage::from_url(Some("postgres://postgres@127.0.0.1/test"), dir),
            Ok(Storage::Postgres { .. })
        ));
        assert!(matches!(
            Storage::from_url(Some("mysql://root@127.0.0.1/test"), dir),
            Ok(Storage::Mysql { .. })
        ));
        assert!(Storage::from_url(Some("redis://x"), dir).is_err());
    }
}

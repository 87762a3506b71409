//! The user service: accounts, login, refresh-token families and the token signing key
//! (SPEC section 3). It owns users and refresh tokens in its own database.
//!
//! Rules live in [`domain`] (no I/O), SQL in [`store`], the use cases in [`accounts`], wire
//! mapping in [`grpc`]. It serves `UserService`, `AuthService` (sign-up, profile,
//! withdrawal, login, refresh, logout, JWKS) and `OAuthService` (OAuth2 login with the
//! providers of `oauth.providers`, see [`oauth`]; with none configured every provider answers
//! `OAUTH_PROVIDER_NOT_FOUND`). `UserInternalService` answers other services of the fleet
//! (display names for the catalog's reviews) without a token and without a REST binding.
//!
//! What the fleet calls: [`bind`] (or [`BoundUser::bind_with`] to share one in-process
//! [`KeyValueStore`] and [`SigningKey`] with the gateway), then `grpc_addr()`, `admin_addr()`,
//! `serve(shutdown)`. The gateway checks [`TOKEN_BLACKLIST_PREFIX`]`<jti>` in the same store and
//! verifies tokens with [`SigningKey::verification_key`] of the same key.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod oauth;
pub mod password;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pillivery_platform::auth::{AuthError, TokenIssuer, TokenVerifier};
use pillivery_platform::events::{BusError, EventBus, Relay};
use pillivery_platform::kv::KvError;
use pillivery_platform::server::{ServeError, ServiceHost, service_name};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use pillivery_proto::user::auth_service_server::AuthServiceServer;
use pillivery_proto::user::o_auth_service_server::OAuthServiceServer;
use pillivery_proto::user::user_internal_service_server::UserInternalServiceServer;
use pillivery_proto::user::user_service_server::UserServiceServer;

pub use crate::accounts::{
    Accounts, EnsureAdminError, TOKEN_BLACKLIST_PREFIX, blacklist_key, ensure_admin,
    on_user_withdrawn,
};
pub use crate::config::UserConfig;
pub use pillivery_platform::auth::SigningKey;
pub use pillivery_platform::kv::KeyValueStore;

use crate::password::{HashError, PasswordHasher};
use crate::store::UserStore;

/// How long one key-value operation may take before it counts as failed.
const KV_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("key-value store: {0}")]
    KeyValue(#[from] KvError),
    #[error("signing key: {0}")]
    SigningKey(#[from] AuthError),
    #[error("password hashing: {0}")]
    Hashing(#[from] HashError),
    #[error("admin account: {0}")]
    Admin(#[from] EnsureAdminError),
    #[error("{0}")]
    OAuth(String),
    #[error("event bus: {0}")]
    EventBus(#[from] BusError),
}

/// The user service with its ports bound, not yet serving.
pub struct BoundUser {
    config: UserConfig,
    host: ServiceHost,
    kv: KeyValueStore,
    signing_key: SigningKey,
    /// Set by the embedded fleet (one in-process bus for every service); otherwise the bus
    /// named by `events.bus_url` is connected when serving starts.
    bus: Option<EventBus>,
}

impl BoundUser {
    /// Binds the ports and prepares the key-value store (Redis when `redis_url` is set, else
    /// in-process) and the signing key (`jwt_private_key`, else `jwt_key_file` loaded or
    /// generated, else a fresh key that lives as long as the process).
    pub async fn bind(config: UserConfig) -> Result<BoundUser, StartError> {
        let kv = match &config.redis_url {
            Some(url) => {
                KeyValueStore::connect_redis(url, &config.redis_key_prefix, KV_OPERATION_TIMEOUT)
                    .await?
            }
            None => KeyValueStore::in_memory(),
        };
        let signing_key = signing_key(&config)?;
        BoundUser::bind_with(config, kv, signing_key).await
    }

    /// Binds with a key-value store and signing key built by the caller: the embedded fleet
    /// shares one in-process store and one key with the gateway this way. `redis_url`,
    /// `jwt_private_key` and `jwt_key_file` of `config` are ignored.
    pub async fn bind_with(
        config: UserConfig,
        kv: KeyValueStore,
        signing_key: SigningKey,
    ) -> Result<BoundUser, StartError> {
        let host = ServiceHost::bind("user", &config.server).await?;
        Ok(BoundUser {
            config,
            host,
            kv,
            signing_key,
            bus: None,
        })
    }

    /// Publishes this service's events on `bus` instead of the one `events.bus_url` names.
    pub fn with_event_bus(self, bus: EventBus) -> BoundUser {
        BoundUser {
            bus: Some(bus),
            ..self
        }
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.host.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.host.admin_addr()
    }

    /// The key tokens are signed with (its public half verifies them).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The key-value store holding the blacklist and login counters.
    pub fn key_value_store(&self) -> &KeyValueStore {
        &self.kv
    }

    /// Migrates, makes sure of the admin account when `admin_password` is set, then serves
    /// until `shutdown`.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), StartError> {
        let BoundUser {
            config,
            host,
            kv,
            signing_key,
            bus,
        } = self;
        let database = pillivery_platform::db::connect_and_migrate::<store::migration::Migrator>(
            &config.database,
        )
        .await?;
        let bus = match bus {
            Some(bus) => bus,
            None => EventBus::connect(&config.events).await?,
        };
        // Background work stops with the service, also when serving ends on an error.
        let tasks = Tasks::new();
        let background = shutdown.child();
        let relay = Relay::new("user", database.clone(), bus, kv.clone(), &config.events)
            .spawn(&tasks, &background);
        let store = UserStore::new(database).with_relay(relay);
        let hasher = PasswordHasher::new(config.password_hash_cost).await?;
        if let Some(password) = &config.admin_password {
            ensure_admin(&store, &hasher, &config.admin_email, password).await?;
        }
        let verifier =
            TokenVerifier::new(vec![signing_key.verification_key()], config.tokens.clone());
        let issuer = TokenIssuer::new(signing_key, config.tokens.clone());
        // The internal service reads the same tables; the store is a cheap clone of the pool.
        let internal_store = store.clone();
        let accounts = Arc::new(Accounts::new(
            store,
            hasher,
            issuer,
            verifier,
            kv,
            config.refresh_ttl_seconds,
            config.login_attempts_per_minute,
        ));
        let oauth = Arc::new(
            oauth::OAuthLogin::new(Arc::clone(&accounts), config.oauth.clone())
                .map_err(StartError::OAuth)?,
        );
        let routes = tonic::service::Routes::new(UserServiceServer::new(grpc::UserGrpc::new(
            Arc::clone(&accounts),
        )))
        .add_service(AuthServiceServer::new(grpc::AuthGrpc::new(accounts)))
        .add_service(OAuthServiceServer::new(grpc::OAuthGrpc::new(oauth)))
        // Internal: no token, reachable only on the fleet's network, never bound to REST.
        .add_service(UserInternalServiceServer::new(grpc::UserInternalGrpc::new(
            internal_store,
        )));
        let served = host
            .serve(
                routes,
                &[
                    service_name::<UserServiceServer<grpc::UserGrpc>>(),
                    service_name::<AuthServiceServer<grpc::AuthGrpc>>(),
                    service_name::<OAuthServiceServer<grpc::OAuthGrpc>>(),
                    service_name::<UserInternalServiceServer<grpc::UserInternalGrpc>>(),
                ],
                shutdown,
            )
            .await;
        background.trigger();
        tasks.close();
        tasks.wait().await;
        served?;
        Ok(())
    }
}

fn signing_key(config: &UserConfig) -> Result<SigningKey, AuthError> {
    if let Some(pem) = &config.jwt_private_key {
        return SigningKey::from_pkcs8_pem(pem, None);
    }
    if let Some(path) = &config.jwt_key_file {
        return SigningKey::load_or_generate(std::path::Path::new(path));
    }
    tracing::warn!(
        "no jwt_private_key nor jwt_key_file: signing with a fresh key; tokens die with this process"
    );
    Ok(SigningKey::generate())
}

/// Binds the service's ports (the database is migrated when it starts serving).
pub async fn bind(config: UserConfig) -> Result<BoundUser, StartError> {
    BoundUser::bind(config).await
}

/// Binds and serves until `shutdown`.
pub async fn run(config: UserConfig, shutdown: Shutdown) -> Result<(), StartError> {
    bind(config).await?.serve(shutdown).await
}

//! What the user service's black-box tests share: the service on a free loopback port with a
//! fresh database, on every configured backend and key-value store.
#![allow(dead_code)]

use pillivery_platform::events::EventBus;
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::server::ServerConfig;
use pillivery_platform::shutdown::Shutdown;
use pillivery_testkit::TestDatabase;
use tonic::transport::Channel;
use user::password::HashCost;
use user::{BoundUser, SigningKey, UserConfig};

/// Where the key-value store of a run lives.
#[derive(Clone, Copy)]
pub enum Kv {
    Memory,
    Redis,
}

impl Kv {
    /// The store, or `None` when Redis is asked for but not configured.
    pub async fn store(self) -> Option<KeyValueStore> {
        match self {
            Kv::Memory => Some(KeyValueStore::in_memory()),
            Kv::Redis => pillivery_testkit::redis_store().await,
        }
    }
}

/// The default config for tests: loopback ports, this database, cheap hashing.
pub fn test_config(database: &TestDatabase) -> UserConfig {
    UserConfig {
        server: ServerConfig::loopback(),
        database: database.config.clone(),
        password_hash_cost: HashCost {
            memory_kib: 256,
            iterations: 1,
        },
        ..UserConfig::default()
    }
}

/// A running user service.
pub struct RunningUser {
    pub channel: Channel,
    shutdown: Shutdown,
    server: tokio::task::JoinHandle<Result<(), user::StartError>>,
}

pub async fn start(config: UserConfig, kv: KeyValueStore) -> RunningUser {
    let bound = BoundUser::bind_with(config, kv, SigningKey::generate())
        .await
        .unwrap();
    serve(bound).await
}

/// Like [`start`], publishing the service's events on `bus`.
pub async fn start_with_bus(config: UserConfig, kv: KeyValueStore, bus: EventBus) -> RunningUser {
    let bound = BoundUser::bind_with(config, kv, SigningKey::generate())
        .await
        .unwrap()
        .with_event_bus(bus);
    serve(bound).await
}

async fn serve(bound: BoundUser) -> RunningUser {
    let url = format!("http://{}", bound.grpc_addr());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(bound.serve(shutdown.clone()));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    RunningUser {
        channel,
        shutdown,
        server,
    }
}

impl RunningUser {
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.server.await.unwrap().unwrap();
    }
}

/// One test per scenario, run on SQLite and then on each configured server.
macro_rules! on_every_backend {
    ($kv:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::run(Some(super::Backend::Sqlite), super::Kv::$kv, super::$name).await;
                super::run(super::Backend::postgres(), super::Kv::$kv, super::$name).await;
                super::run(super::Backend::mysql(), super::Kv::$kv, super::$name).await;
            }
        )*
    };
}

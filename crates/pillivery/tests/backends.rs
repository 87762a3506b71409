//! The fleet on the production databases: every service migrates its own schema (PostgreSQL) or
//! database (MySQL/MariaDB) and the slice answers the same as on SQLite. Runs when the CI
//! variables name the servers; a named server that is down fails the test.

mod common;

use common::get;
use pillivery::{Fleet, FleetOptions, Storage};
use pillivery_testkit::Backend;
use serde_json::json;

#[tokio::test]
async fn the_slice_works_on_every_configured_database() {
    for backend in pillivery_testkit::backends() {
        let data = tempfile::tempdir().unwrap();
        let prefix = format!("t{}", uuid_suffix());
        let storage = match &backend {
            Backend::Sqlite => continue,
            Backend::Postgres(url) => Storage::Postgres {
                url: url.clone(),
                schema_prefix: prefix,
            },
            Backend::Mysql(url) => Storage::Mysql {
                url: url.clone(),
                database_prefix: prefix,
            },
        };
        let mut options = FleetOptions::for_tests(data.path());
        options.storage = storage;
        let fleet = Fleet::start(options)
            .await
            .unwrap_or_else(|error| panic!("{}: {error:#}", backend.name()));
        let base = format!("http://{}", fleet.http_addr);
        let (status, _, body) = get(&format!(
            "{base}/api/items?category=EYE&sort=PRICE_L&page=1&size=20"
        ))
        .await;
        assert_eq!(status, 200, "{}: {body}", backend.name());
        assert!(!body["data"].as_array().unwrap().is_empty());
        let (status, _, body) = get(&format!("{base}/api/items/999999")).await;
        assert_eq!(status, 404);
        assert_eq!(body["code"], json!("ITEM_NOT_FOUND"));
        let (_, _, all) = get(&format!("{base}/api/items?size=1")).await;
        assert_eq!(
            all["pageInfo"]["totalElements"],
            json!(200),
            "{}",
            backend.name()
        );
        fleet.shutdown().await.unwrap();
    }
}

fn uuid_suffix() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| format!("{}_{}", elapsed.as_nanos(), std::process::id()))
        .unwrap_or_default()
}

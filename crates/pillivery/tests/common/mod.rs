//! Shared set-up for the fleet's black-box tests.
#![allow(dead_code)]

use pillivery::{Fleet, FleetOptions};

/// A fleet on free ports with its own data folder, removed when dropped.
pub struct TestFleet {
    pub fleet: Fleet,
    pub base: String,
    _data: tempfile::TempDir,
}

impl TestFleet {
    /// A fleet started by the test itself (custom options), with its data folder.
    pub fn from(fleet: Fleet, data: tempfile::TempDir) -> TestFleet {
        let base = format!("http://{}", fleet.http_addr);
        TestFleet {
            fleet,
            base,
            _data: data,
        }
    }
}

pub async fn start_fleet() -> TestFleet {
    let data = tempfile::tempdir().expect("a data folder");
    let fleet = Fleet::start(FleetOptions::for_tests(data.path()))
        .await
        .expect("the fleet starts");
    let base = format!("http://{}", fleet.http_addr);
    TestFleet {
        fleet,
        base,
        _data: data,
    }
}

pub async fn get(
    url: &str,
) -> (
    u16,
    pillivery_testkit::reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let response = pillivery_testkit::http_client()
        .get(url)
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("a body");
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("JSON body, got {:?}", String::from_utf8_lossy(&body)))
    };
    (status, headers, json)
}

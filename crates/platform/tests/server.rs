//! The service host's health and shutdown sequence, observed from outside.

use std::net::SocketAddr;
use std::time::Duration;

use pillivery_platform::server::{
    LIVENESS, READINESS, ServerConfig, ServiceHost, wait_until_serving,
};
use pillivery_platform::shutdown::Shutdown;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn status(addr: SocketAddr, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(answer.status).unwrap()
}

async fn readyz(addr: SocketAddr) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer[9..12].parse().unwrap()
}

#[tokio::test]
async fn readiness_turns_off_first_then_the_server_drains_and_stops() {
    let config = ServerConfig {
        lameduck_ms: 600,
        ..ServerConfig::loopback()
    };
    let host = ServiceHost::bind("test", &config).await.unwrap();
    let grpc = host.grpc_addr();
    let admin = host.admin_addr();
    // Bound, not serving yet (a service migrating or seeding): live but not ready.
    assert_eq!(readyz(admin).await, 503);
    let shutdown = Shutdown::new();
    let serving =
        tokio::spawn(host.serve(tonic::service::Routes::default(), &[], shutdown.clone()));

    wait_until_serving(grpc, READINESS, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status(grpc, LIVENESS).await, ServingStatus::Serving);
    assert_eq!(status(grpc, "").await, ServingStatus::Serving);
    assert_eq!(readyz(admin).await, 200);

    shutdown.trigger();
    // During the lameduck period the server still answers, but says it is not ready.
    poll_until(|| async { status(grpc, READINESS).await == ServingStatus::NotServing }).await;
    assert_eq!(status(grpc, LIVENESS).await, ServingStatus::Serving);
    assert_eq!(readyz(admin).await, 503);

    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("stops within the grace period")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
}

/// Polls until `check` holds, for at most 2 s.
async fn poll_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

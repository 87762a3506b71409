//! What the gateway passes to a service besides the request: the caller's W3C trace (continued,
//! not copied), the request id, the language, the client address and the remaining deadline.
//! The service here is a recording fake; its own test binary because tracing is process-wide.

use std::sync::{Arc, Mutex};

use pillivery_platform::shutdown::Shutdown;
use pillivery_platform::telemetry::{self, TelemetryConfig};
use pillivery_proto::catalog as pb;
use pillivery_proto::catalog::catalog_service_server::{CatalogService, CatalogServiceServer};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct RecordingCatalog {
    seen: Arc<Mutex<Vec<MetadataMap>>>,
}

#[tonic::async_trait]
impl CatalogService for RecordingCatalog {
    async fn list_categories(
        &self,
        _: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        Err(Status::unimplemented("not used by this test"))
    }

    async fn search_items(
        &self,
        _: Request<pb::SearchItemsRequest>,
    ) -> Result<Response<pb::ItemPage>, Status> {
        Err(Status::unimplemented("not used by this test"))
    }

    async fn get_main_page(
        &self,
        _: Request<pb::GetMainPageRequest>,
    ) -> Result<Response<pb::MainPage>, Status> {
        Err(Status::unimplemented("not used by this test"))
    }

    async fn get_item(
        &self,
        request: Request<pb::GetItemRequest>,
    ) -> Result<Response<pb::Item>, Status> {
        self.seen.lock().unwrap().push(request.metadata().clone());
        Ok(Response::new(pb::Item {
            item_id: request.get_ref().item_id,
            ..Default::default()
        }))
    }
}

#[tokio::test]
async fn the_trace_and_the_request_context_reach_the_service() {
    let _telemetry = telemetry::init(
        "propagation-test",
        &TelemetryConfig {
            log_level: "warn".into(),
            ..Default::default()
        },
    );
    let catalog = RecordingCatalog::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let catalog_addr = listener.local_addr().unwrap();
    let stop = Shutdown::new();
    let server = {
        let catalog = catalog.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(CatalogServiceServer::new(catalog))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async move { stop.wait().await },
                )
                .await
        })
    };
    let mut upstreams = std::collections::BTreeMap::new();
    upstreams.insert(
        "catalog".to_owned(),
        gateway::GatewayUpstream::new(
            format!("http://{catalog_addr}"),
            &["pillivery.catalog.v1.CatalogService"],
        ),
    );
    let bound = gateway::BoundGateway::bind(gateway::GatewayConfig {
        http_host: [127, 0, 0, 1].into(),
        http_port: 0,
        server: pillivery_platform::server::ServerConfig::loopback(),
        upstreams,
        ..Default::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", bound.http_addr());
    let gateway_task = tokio::spawn(bound.serve(stop.clone()));

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = pillivery_testkit::http_client()
        .get(format!("{base}/api/items/7"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("x-request-id", "req-42")
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let item: serde_json::Value = response.json().await.unwrap();
    assert_eq!(item["itemId"], serde_json::json!(7));

    let seen = catalog
        .seen
        .lock()
        .unwrap()
        .pop()
        .expect("the service was called");
    let text = |name: &str| {
        seen.get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let traceparent = text("traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], caller_trace, "the same trace continues");
    assert_ne!(
        parts[2], caller_span,
        "the gateway's own span is the parent"
    );
    assert_eq!(text("x-request-id"), "req-42");
    assert_eq!(text("accept-language"), "en");
    assert_eq!(text("x-client-ip"), "127.0.0.1");
    assert!(
        !text("grpc-timeout").is_empty(),
        "the deadline travels downstream"
    );

    stop.trigger();
    gateway_task.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
}

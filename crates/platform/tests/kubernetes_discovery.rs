//! Discovery from EndpointSlices, end to end: an `Upstream` with a `kubernetes:///` target
//! watches the slices through kube's real client and watcher, whose HTTP requests reach a
//! scripted API server (the Kubernetes API is the outside world here) that answers with
//! EndpointSlice JSON as the EndpointSlice controller writes it. The "pods" are real gRPC
//! servers on loopback addresses (127.0.0.2, 127.0.0.3, ... share one port, as pods share the
//! slice's port), each naming itself in a response header, so the test sees which pod answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use pillivery_platform::client::{CallOptions, Upstream, UpstreamConfig};
use pillivery_platform::shutdown::{Shutdown, Tasks};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A gRPC server standing for one pod: health service, plus an `x-pod` header on every answer.
struct Pod {
    address: SocketAddr,
    stop: Shutdown,
    handle: tokio::task::JoinHandle<()>,
}

impl Pod {
    async fn stop(self) {
        self.stop.trigger();
        self.handle.await.unwrap();
    }
}

async fn start_pod(name: &'static str, address: SocketAddr) -> std::io::Result<Pod> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let stop = Shutdown::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(tower::util::MapResponseLayer::new(
                move |mut response: http::Response<tonic::body::Body>| {
                    response
                        .headers_mut()
                        .insert("x-pod", http::HeaderValue::from_static(name));
                    response
                },
            ))
            .add_service(health)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move { stopped.wait().await },
            )
            .await
            .unwrap();
    });
    Ok(Pod {
        address,
        stop,
        handle,
    })
}

/// Three pods on one port (127.0.0.1, .2, .3), as the slice gives one port for all endpoints.
async fn start_pods() -> (u16, [Pod; 3]) {
    for _ in 0..20 {
        let first = start_pod("pod-a", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = first.address.port();
        let second = start_pod("pod-b", SocketAddr::new([127, 0, 0, 2].into(), port)).await;
        let third = start_pod("pod-c", SocketAddr::new([127, 0, 0, 3].into(), port)).await;
        match (second, third) {
            (Ok(second), Ok(third)) => return (port, [first, second, third]),
            (second, third) => {
                // Taken on one of the other addresses: try another port.
                first.stop().await;
                for pod in [second, third].into_iter().flatten() {
                    pod.stop().await;
                }
            }
        }
    }
    panic!("no port was free on 127.0.0.1-3");
}

/// One endpoint of a slice as the EndpointSlice controller writes it.
struct PodState {
    name: &'static str,
    ip: &'static str,
    ready: bool,
    serving: bool,
    terminating: bool,
}

const fn ready(name: &'static str, ip: &'static str) -> PodState {
    PodState {
        name,
        ip,
        ready: true,
        serving: true,
        terminating: false,
    }
}

const fn starting(name: &'static str, ip: &'static str) -> PodState {
    PodState {
        name,
        ip,
        ready: false,
        serving: false,
        terminating: false,
    }
}

const fn terminating(name: &'static str, ip: &'static str) -> PodState {
    PodState {
        name,
        ip,
        ready: false,
        serving: true,
        terminating: true,
    }
}

/// An EndpointSlice of the `catalog` Service in namespace `shop`, shaped like the controller's.
fn slice(resource_version: u64, port: u16, pods: &[PodState]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "catalog-7x2kq",
            "generateName": "catalog-",
            "namespace": "shop",
            "uid": "0b1c6f4e-3a52-4c2e-9a57-3f3c2a9d4e11",
            "resourceVersion": resource_version.to_string(),
            "generation": resource_version,
            "creationTimestamp": "2026-11-24T10:00:00Z",
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "kubernetes.io/service-name": "catalog",
                "app.kubernetes.io/name": "pillivery",
                "app.kubernetes.io/component": "catalog"
            },
            "annotations": {
                "endpoints.kubernetes.io/last-change-trigger-time": "2026-11-24T10:00:00Z"
            },
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Service",
                "name": "catalog",
                "uid": "5d0e3c1a-8f7b-4f0e-b6c2-1e2d3c4b5a69",
                "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "addressType": "IPv4",
        "endpoints": pods.iter().map(|pod| json!({
            "addresses": [pod.ip],
            "conditions": {
                "ready": pod.ready,
                "serving": pod.serving,
                "terminating": pod.terminating
            },
            "nodeName": "node-1",
            "zone": "zone-a",
            "targetRef": {
                "kind": "Pod",
                "namespace": "shop",
                "name": pod.name,
                "uid": format!("00000000-0000-4000-8000-{:012}", pod.name.len())
            }
        })).collect::<Vec<_>>(),
        "ports": [
            {"name": "admin", "port": 9090, "protocol": "TCP", "appProtocol": "http"},
            {"name": "grpc", "port": port, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}
        ]
    })
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The API server's side: the list answer, then one long watch fed by the test.
struct ScriptedApi {
    list: Value,
    watch: Option<mpsc::UnboundedReceiver<Bytes>>,
    requests: Vec<String>,
}

fn kube_client(api: Arc<Mutex<ScriptedApi>>) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let api = Arc::clone(&api);
        async move {
            let uri = request.uri().to_string();
            let mut api = api.lock().unwrap();
            api.requests.push(uri.clone());
            let body: Body = if uri.contains("watch=true") {
                match api.watch.take() {
                    Some(events) => http_body_util::StreamBody::new(futures::stream::unfold(
                        events,
                        |mut events| async move {
                            let line = events.recv().await?;
                            Some((Ok(http_body::Frame::data(line)), events))
                        },
                    ))
                    .boxed_unsync(),
                    // A second watch would mean the first broke: hang rather than replay.
                    None => http_body_util::StreamBody::new(futures::stream::pending::<
                        Result<http_body::Frame<Bytes>, Infallible>,
                    >())
                    .boxed_unsync(),
                }
            } else {
                http_body_util::Full::new(Bytes::from(api.list.to_string())).boxed_unsync()
            };
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, "default")
}

fn watch_event(kind: &str, object: Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// Which pod answered one health check through the upstream (`None`: the call failed).
async fn who_answers(upstream: &Upstream) -> Option<String> {
    let options = CallOptions {
        deadline: Duration::from_secs(2),
        retryable: false,
    };
    upstream
        .call(options, |channel, _| async move {
            let response = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(response
                .metadata()
                .get("x-pod")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("unnamed")
                .to_owned())
        })
        .await
        .ok()
}

/// Calls until `done` holds for the answers of the last `window` calls, or fails after 10 s.
async fn calls_until(
    upstream: &Upstream,
    window: usize,
    what: &str,
    done: impl Fn(&[Option<String>]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut answers: Vec<Option<String>> = Vec::new();
    loop {
        answers.push(who_answers(upstream).await);
        if answers.len() >= window && done(&answers[answers.len() - window..]) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: last answers {:?}",
            &answers[answers.len().saturating_sub(window)..]
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn all_from(answers: &[Option<String>], pods: &[&str]) -> bool {
    answers
        .iter()
        .all(|answer| answer.as_deref().is_some_and(|pod| pods.contains(&pod)))
}

fn seen(answers: &[Option<String>], pod: &str) -> bool {
    answers.iter().any(|answer| answer.as_deref() == Some(pod))
}

#[tokio::test]
async fn calls_follow_the_ready_pods_of_the_endpoint_slices() {
    let (port, [pod_a, pod_b, pod_c]) = start_pods().await;
    let (events, watch) = mpsc::unbounded_channel();
    let api = Arc::new(Mutex::new(ScriptedApi {
        list: json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": "1"},
            "items": [slice(1, port, &[ready("pod-a", "127.0.0.1"), starting("pod-c", "127.0.0.3")])]
        }),
        watch: Some(watch),
        requests: Vec::new(),
    }));
    let tasks = Tasks::new();
    let shutdown = Shutdown::new();
    let upstream = Upstream::with_kubernetes_client(
        "catalog",
        &UpstreamConfig::new("kubernetes:///catalog.shop:grpc"),
        kube_client(Arc::clone(&api)),
        &tasks,
        &shutdown,
    )
    .unwrap();

    // Listed: one ready pod. The starting one (running, but not ready) is never called.
    calls_until(&upstream, 30, "only the ready pod", |answers| {
        all_from(answers, &["pod-a"])
    })
    .await;
    {
        let api = api.lock().unwrap();
        let list = &api.requests[0];
        assert!(
            list.starts_with("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?"),
            "{list}"
        );
        assert!(
            list.contains("labelSelector=kubernetes.io%2Fservice-name%3Dcatalog"),
            "{list}"
        );
    }

    // A new pod turns ready: calls reach it, and spread over both.
    events
        .send(watch_event(
            "MODIFIED",
            slice(
                2,
                port,
                &[
                    ready("pod-a", "127.0.0.1"),
                    ready("pod-b", "127.0.0.2"),
                    starting("pod-c", "127.0.0.3"),
                ],
            ),
        ))
        .unwrap();
    calls_until(&upstream, 40, "spread over a and b", |answers| {
        all_from(answers, &["pod-a", "pod-b"]) && seen(answers, "pod-a") && seen(answers, "pod-b")
    })
    .await;

    // Pod a terminates (still serving its in-flight calls) and c turns ready: calls move away
    // from a; once they have, a stops for good and no call fails.
    events
        .send(watch_event(
            "MODIFIED",
            slice(
                3,
                port,
                &[
                    terminating("pod-a", "127.0.0.1"),
                    ready("pod-b", "127.0.0.2"),
                    ready("pod-c", "127.0.0.3"),
                ],
            ),
        ))
        .unwrap();
    calls_until(&upstream, 40, "away from the terminating pod", |answers| {
        all_from(answers, &["pod-b", "pod-c"]) && seen(answers, "pod-c")
    })
    .await;
    pod_a.stop().await;
    for _ in 0..30 {
        let answer = who_answers(&upstream).await;
        assert!(
            matches!(answer.as_deref(), Some("pod-b" | "pod-c")),
            "{answer:?}"
        );
    }

    // Every pod left is terminating, then the slice disappears: calls still have somewhere
    // to go (never an empty set while a pod was ready).
    events
        .send(watch_event(
            "MODIFIED",
            slice(
                4,
                port,
                &[
                    terminating("pod-b", "127.0.0.2"),
                    terminating("pod-c", "127.0.0.3"),
                ],
            ),
        ))
        .unwrap();
    events
        .send(watch_event(
            "DELETED",
            slice(5, port, &[terminating("pod-b", "127.0.0.2")]),
        ))
        .unwrap();
    calls_until(&upstream, 30, "the last pods are kept", |answers| {
        all_from(answers, &["pod-b", "pod-c"])
    })
    .await;

    shutdown.trigger();
    tasks.close();
    tasks.wait().await;
    pod_b.stop().await;
    pod_c.stop().await;
    let watches = api
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|uri| uri.contains("watch=true"))
        .count();
    assert_eq!(watches, 1, "the watch was opened once and never broke");
}

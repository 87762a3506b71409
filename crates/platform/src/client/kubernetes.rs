//! Discovery from Kubernetes EndpointSlices: the pods behind a Service, fed into a balanced
//! channel so gRPC calls spread over every ready pod.
//!
//! One HTTP/2 connection to a ClusterIP is balanced by kube-proxy once, when it is opened, so a
//! client that talks to the Service address pins every call to one pod. Instead, a
//! `kubernetes:///<service>[.<namespace>]:<port>` target watches the Service's EndpointSlices
//! (label `kubernetes.io/service-name`) through the API server and keeps the channel's endpoints
//! equal to the pods that are ready: a pod is added when it turns ready and removed when it stops
//! being ready (terminating, failing its readiness probe, deleted).
//!
//! The set never becomes empty while a pod was ready: when no endpoint is ready any more, the
//! ones still serving while they terminate are used (what kube-proxy does), and when there are
//! none of those either (the Service was deleted, a relist came back empty) the last known pods
//! are kept, so calls fail on their own deadline and breaker rather than waiting on an empty pool.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc::Sender;
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;

use crate::shutdown::Shutdown;

/// The label the EndpointSlice controller puts on every slice of a Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A parsed `kubernetes:///<service>[.<namespace>]:<port>` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesTarget {
    pub service: String,
    /// `None`: the namespace the client runs in (the pod's own).
    pub namespace: Option<String>,
    pub port: PortSelector,
}

/// Which port of the slice's endpoints calls go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSelector {
    /// The container port itself (`:50051`).
    Number(u16),
    /// The port of that name in the slice, as the Service names it (`:grpc`).
    Name(String),
}

impl KubernetesTarget {
    pub const SCHEME: &'static str = "kubernetes:///";

    /// Parses the part after `kubernetes:///`.
    pub fn parse(target: &str) -> Result<KubernetesTarget, String> {
        let rest = target.strip_prefix(Self::SCHEME).ok_or_else(|| {
            format!("`{target}` must look like kubernetes:///service.namespace:port")
        })?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{target}` needs a port (kubernetes:///service:port)"))?;
        let (service, namespace) = match host.split_once('.') {
            Some((service, namespace)) => (service, Some(namespace)),
            None => (host, None),
        };
        if !is_dns_label(service) {
            return Err(format!("`{target}`: `{service}` is not a Service name"));
        }
        if let Some(namespace) = namespace
            && !is_dns_label(namespace)
        {
            return Err(format!("`{target}`: `{namespace}` is not a namespace"));
        }
        let port = match port.parse::<u16>() {
            Ok(0) => return Err(format!("`{target}` has port 0")),
            Ok(number) => PortSelector::Number(number),
            Err(_) if is_dns_label(port) => PortSelector::Name(port.to_owned()),
            Err(_) => return Err(format!("`{target}` has an invalid port `{port}`")),
        };
        Ok(KubernetesTarget {
            service: service.to_owned(),
            namespace: namespace.map(str::to_owned),
            port,
        })
    }
}

/// RFC 1123 labels: what Kubernetes accepts as Service, namespace and port names.
fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// The endpoints of one EndpointSlice, by condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SliceEndpoints {
    ready: BTreeSet<SocketAddr>,
    /// Not ready but still serving: terminating pods finishing their in-flight work.
    serving: BTreeSet<SocketAddr>,
}

fn slice_endpoints(slice: &EndpointSlice, port: &PortSelector) -> SliceEndpoints {
    let mut found = SliceEndpoints::default();
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return found;
    }
    let port = match port {
        PortSelector::Number(number) => Some(*number),
        PortSelector::Name(name) => slice
            .ports
            .iter()
            .flatten()
            .find(|candidate| candidate.name.as_deref() == Some(name.as_str()))
            .and_then(|candidate| candidate.port)
            .and_then(|number| u16::try_from(number).ok()),
    };
    let Some(port) = port else {
        return found;
    };
    for endpoint in &slice.endpoints {
        let conditions = endpoint.conditions.as_ref();
        // The API's rules for absent conditions: ready and serving count as true, terminating
        // as false.
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        for address in &endpoint.addresses {
            let Ok(ip) = address.parse::<IpAddr>() else {
                continue;
            };
            let address = SocketAddr::new(ip, port);
            if ready {
                found.ready.insert(address);
            } else if serving {
                found.serving.insert(address);
            }
        }
    }
    found
}

/// What the watcher knows: every slice of the Service by name, and what the channel holds.
#[derive(Debug, Default)]
pub(crate) struct EndpointSet {
    slices: BTreeMap<String, SliceEndpoints>,
    /// Slices seen since a relist started; they replace `slices` when it completes.
    relisting: Option<BTreeMap<String, SliceEndpoints>>,
    current: BTreeSet<SocketAddr>,
}

/// A change for the balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EndpointChange {
    Add(SocketAddr),
    Remove(SocketAddr),
}

impl EndpointSet {
    /// Applies one watcher event and returns the changes that bring the channel in line.
    pub(crate) fn apply(
        &mut self,
        event: watcher::Event<EndpointSlice>,
        port: &PortSelector,
    ) -> Vec<EndpointChange> {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(BTreeMap::new());
                return Vec::new();
            }
            watcher::Event::InitApply(slice) => {
                let name = slice.metadata.name.clone().unwrap_or_default();
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name, slice_endpoints(&slice, port));
                return Vec::new();
            }
            watcher::Event::InitDone => {
                self.slices = self.relisting.take().unwrap_or_default();
            }
            watcher::Event::Apply(slice) => {
                let name = slice.metadata.name.clone().unwrap_or_default();
                self.slices.insert(name, slice_endpoints(&slice, port));
            }
            watcher::Event::Delete(slice) => {
                let name = slice.metadata.name.clone().unwrap_or_default();
                self.slices.remove(&name);
            }
        }
        self.reconcile()
    }

    fn reconcile(&mut self) -> Vec<EndpointChange> {
        let ready: BTreeSet<SocketAddr> = self
            .slices
            .values()
            .flat_map(|slice| slice.ready.iter().copied())
            .collect();
        let wanted = if !ready.is_empty() {
            ready
        } else {
            let serving: BTreeSet<SocketAddr> = self
                .slices
                .values()
                .flat_map(|slice| slice.serving.iter().copied())
                .collect();
            if serving.is_empty() {
                // Nothing ready or serving: keep what there is rather than an empty pool.
                self.current.clone()
            } else {
                serving
            }
        };
        let mut changes: Vec<EndpointChange> = wanted
            .difference(&self.current)
            .map(|address| EndpointChange::Add(*address))
            .collect();
        changes.extend(
            self.current
                .difference(&wanted)
                .map(|address| EndpointChange::Remove(*address)),
        );
        self.current = wanted;
        changes
    }
}

/// Keeps a balanced channel's endpoints equal to the ready pods behind `target`, until
/// `shutdown` or until the channel is gone.
pub(crate) async fn follow_endpoint_slices(
    upstream: String,
    client: kube::Client,
    target: KubernetesTarget,
    connect_timeout: Duration,
    changes: Sender<Change<SocketAddr, Endpoint>>,
    shutdown: Shutdown,
) {
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &namespace);
    let config =
        watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", target.service));
    // The default backoff keeps the stream alive across API errors (retried with a growing
    // pause); the endpoints known so far stay in the channel meanwhile.
    let events = watcher(api, config).default_backoff();
    tokio::pin!(events);
    let mut set = EndpointSet::default();
    loop {
        let event = tokio::select! {
            () = shutdown.wait() => return,
            event = events.next() => event,
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                tracing::warn!(%upstream, service = %target.service, %namespace, %error, "watching EndpointSlices failed");
                continue;
            }
            None => return,
        };
        let changes_now = set.apply(event, &target.port);
        if changes_now.is_empty() {
            continue;
        }
        for change in changes_now {
            let change = match change {
                EndpointChange::Add(address) => {
                    let Ok(endpoint) =
                        super::endpoint(&format!("http://{address}"), connect_timeout)
                    else {
                        continue;
                    };
                    Change::Insert(address, endpoint)
                }
                EndpointChange::Remove(address) => Change::Remove(address),
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
        tracing::info!(%upstream, service = %target.service, %namespace, endpoints = set.current.len(), "endpoints changed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_say_why_not() {
        assert_eq!(
            KubernetesTarget::parse("kubernetes:///catalog.shop:50051"),
            Ok(KubernetesTarget {
                service: "catalog".into(),
                namespace: Some("shop".into()),
                port: PortSelector::Number(50051),
            })
        );
        assert_eq!(
            KubernetesTarget::parse("kubernetes:///pillivery-catalog:grpc"),
            Ok(KubernetesTarget {
                service: "pillivery-catalog".into(),
                namespace: None,
                port: PortSelector::Name("grpc".into()),
            })
        );
        for bad in [
            "kubernetes:///catalog",
            "kubernetes:///:50051",
            "kubernetes:///Catalog:50051",
            "kubernetes:///catalog.shop.svc:50051",
            "kubernetes:///catalog:0",
            "kubernetes:///catalog:gRPC",
            "kubernetes://catalog:50051",
        ] {
            assert!(KubernetesTarget::parse(bad).is_err(), "{bad}");
        }
    }

    fn slice(name: &str, endpoints: &[(&str, Option<bool>, Option<bool>)]) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {SERVICE_NAME_LABEL: "catalog"}},
            "addressType": "IPv4",
            "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
            "endpoints": endpoints.iter().map(|(ip, ready, serving)| serde_json::json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": serving, "terminating": ready == &Some(false)},
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn address(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 50051)
    }

    #[test]
    fn ready_pods_come_and_go_but_the_set_never_empties() {
        let port = PortSelector::Name("grpc".into());
        let mut set = EndpointSet::default();
        assert!(set.apply(watcher::Event::Init, &port).is_empty());
        let listed = slice("catalog-a", &[("10.0.0.1", Some(true), Some(true))]);
        assert!(
            set.apply(watcher::Event::InitApply(listed), &port)
                .is_empty()
        );
        assert_eq!(
            set.apply(watcher::Event::InitDone, &port),
            vec![EndpointChange::Add(address("10.0.0.1"))]
        );
        // A starting pod (not ready) is not called.
        let starting = slice(
            "catalog-a",
            &[
                ("10.0.0.1", Some(true), Some(true)),
                ("10.0.0.2", Some(false), Some(false)),
            ],
        );
        assert!(set.apply(watcher::Event::Apply(starting), &port).is_empty());
        let both = slice(
            "catalog-a",
            &[
                ("10.0.0.1", Some(true), Some(true)),
                ("10.0.0.2", Some(true), Some(true)),
            ],
        );
        assert_eq!(
            set.apply(watcher::Event::Apply(both), &port),
            vec![EndpointChange::Add(address("10.0.0.2"))]
        );
        // The first one terminates (still serving): it leaves, the other stays.
        let one_terminating = slice(
            "catalog-a",
            &[
                ("10.0.0.1", Some(false), Some(true)),
                ("10.0.0.2", Some(true), Some(true)),
            ],
        );
        assert_eq!(
            set.apply(watcher::Event::Apply(one_terminating), &port),
            vec![EndpointChange::Remove(address("10.0.0.1"))]
        );
        // Every pod terminating: the serving ones are used rather than none.
        let all_terminating = slice(
            "catalog-a",
            &[
                ("10.0.0.1", Some(false), Some(true)),
                ("10.0.0.2", Some(false), Some(true)),
            ],
        );
        assert_eq!(
            set.apply(watcher::Event::Apply(all_terminating.clone()), &port),
            vec![EndpointChange::Add(address("10.0.0.1"))]
        );
        // The slice deleted, then an empty relist: the last pods are kept.
        assert!(
            set.apply(watcher::Event::Delete(all_terminating), &port)
                .is_empty()
        );
        assert!(set.apply(watcher::Event::Init, &port).is_empty());
        assert!(set.apply(watcher::Event::InitDone, &port).is_empty());
        assert_eq!(set.current.len(), 2);
        // A new pod in another slice replaces them as soon as it is ready.
        let other = slice("catalog-b", &[("10.0.0.3", None, None)]);
        let mut changes = set.apply(watcher::Event::Apply(other), &port);
        changes.sort_by_key(|change| format!("{change:?}"));
        assert_eq!(
            changes,
            vec![
                EndpointChange::Add(address("10.0.0.3")),
                EndpointChange::Remove(address("10.0.0.1")),
                EndpointChange::Remove(address("10.0.0.2")),
            ]
        );
    }

    #[test]
    fn a_numbered_port_is_used_as_is_and_an_unknown_name_adds_nothing() {
        let ready = slice("catalog-a", &[("10.0.0.1", Some(true), Some(true))]);
        assert_eq!(
            slice_endpoints(&ready, &PortSelector::Number(6000)).ready,
            BTreeSet::from([SocketAddr::new("10.0.0.1".parse().unwrap(), 6000)])
        );
        assert!(
            slice_endpoints(&ready, &PortSelector::Name("http".into()))
                .ready
                .is_empty()
        );
    }
}

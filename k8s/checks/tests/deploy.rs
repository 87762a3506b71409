//! What must hold for every way Pillivery is deployed: the Helm chart rendered with its default
//! and production values, and the kustomize overlays. Each manifest is read into Kubernetes'
//! own types with no field left over; then the fleet's rules are checked (docs/deploy.md):
//! every service has its Deployment, Services, autoscaler and disruption budget; probes ask
//! the ports the container declares; each setting is one the binary accepts (the binary's own
//! `--check-config` runs on the rendered environment); images are pinned; resources and a
//! hardened security context on every container; the NetworkPolicies allow exactly the call
//! graph; the values schema rejects typos; every Envoy config is valid against Envoy's API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pillivery_deploy_checks::{
    Manifest, Rendered, any_types, envoy_bootstrap, generate_kustomize_base, kustomize, lint_chart,
    render_chart, repo_root,
};
use serde_json::Value;

const SERVICES: [&str; 6] = [
    "gateway",
    "user",
    "catalog",
    "order",
    "payment",
    "scheduler",
];

/// Who calls whom (SPEC §1, docs/deploy.md), plus the edge proxy before the gateway.
fn call_graph() -> BTreeSet<(String, String)> {
    [
        ("edge", "gateway"),
        ("gateway", "user"),
        ("gateway", "catalog"),
        ("gateway", "order"),
        ("gateway", "payment"),
        ("gateway", "scheduler"),
        ("order", "catalog"),
        ("order", "payment"),
        ("payment", "order"),
        ("scheduler", "order"),
        ("scheduler", "payment"),
        ("catalog", "order"),
        ("catalog", "user"),
    ]
    .into_iter()
    .map(|(from, to)| (from.to_owned(), to.to_owned()))
    .collect()
}

fn chart_values(file: &str) -> PathBuf {
    repo_root().join("charts/pillivery").join(file)
}

fn rendered(values: &Path) -> Vec<Manifest> {
    match render_chart(values, "shop", "shop") {
        Rendered::Manifests(manifests) => manifests,
        Rendered::Refused(error) => panic!("{} does not render: {error}", values.display()),
    }
}

/// Every deployment the tests look at: name, manifests.
fn deployments_of_every_kind() -> Vec<(String, Vec<Manifest>)> {
    let root = repo_root();
    vec![
        (
            "chart, default values".into(),
            rendered(&chart_values("values.yaml")),
        ),
        (
            "chart, production values".into(),
            rendered(&chart_values("values-production.yaml")),
        ),
        (
            "kustomize dev".into(),
            kustomize(&root.join("k8s/overlays/dev")),
        ),
        (
            "kustomize prod".into(),
            kustomize(&root.join("k8s/overlays/prod")),
        ),
    ]
}

/// Reads every manifest into its k8s-openapi type; any other kind is an error.
fn check_types(manifests: &[Manifest]) {
    for manifest in manifests {
        let result = match manifest.kind() {
            "Deployment" => manifest.typed::<Deployment>().map(drop),
            "Service" => manifest.typed::<Service>().map(drop),
            "ServiceAccount" => manifest.typed::<ServiceAccount>().map(drop),
            "ConfigMap" => manifest.typed::<ConfigMap>().map(drop),
            "HorizontalPodAutoscaler" => manifest.typed::<HorizontalPodAutoscaler>().map(drop),
            "PodDisruptionBudget" => manifest.typed::<PodDisruptionBudget>().map(drop),
            "NetworkPolicy" => manifest.typed::<NetworkPolicy>().map(drop),
            "Role" => manifest.typed::<Role>().map(drop),
            "RoleBinding" => manifest.typed::<RoleBinding>().map(drop),
            "Job" => manifest.typed::<Job>().map(drop),
            "Namespace" => manifest.typed::<Namespace>().map(drop),
            other => Err(format!(
                "{} ({}): unexpected kind {other}",
                manifest.name(),
                manifest.source
            )),
        };
        if let Err(error) = result {
            panic!("{error}");
        }
        let api_version = manifest.object["apiVersion"].as_str().unwrap_or_default();
        let expected = match manifest.kind() {
            "Deployment" => "apps/v1",
            "HorizontalPodAutoscaler" => "autoscaling/v2",
            "PodDisruptionBudget" => "policy/v1",
            "NetworkPolicy" => "networking.k8s.io/v1",
            "Role" | "RoleBinding" => "rbac.authorization.k8s.io/v1",
            "Job" => "batch/v1",
            _ => "v1",
        };
        assert_eq!(
            api_version,
            expected,
            "{} {}",
            manifest.kind(),
            manifest.name()
        );
    }
}

fn of_kind<'a>(manifests: &'a [Manifest], kind: &str) -> Vec<&'a Manifest> {
    manifests.iter().filter(|m| m.kind() == kind).collect()
}

fn component(manifest: &Manifest) -> &str {
    manifest
        .label("app.kubernetes.io/component")
        .unwrap_or_default()
}

fn find<'a>(manifests: &'a [Manifest], kind: &str, component_name: &str) -> Vec<&'a Manifest> {
    manifests
        .iter()
        .filter(|m| m.kind() == kind && component(m) == component_name)
        .collect()
}

fn matches_selector(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "selectors here use matchLabels only: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(name, value)| labels.get(name) == Some(value))
}

fn pod_labels(deployment: &Manifest) -> &Value {
    &deployment.object["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn the_chart_lints_clean_with_default_and_production_values() {
    for file in ["values.yaml", "values-production.yaml"] {
        let report = lint_chart(&chart_values(file));
        assert_eq!(report["errors"], serde_json::json!([]), "{file}: {report}");
        let problems: Vec<&Value> = report["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|message| message["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(problems.is_empty(), "{file}: {problems:?}");
    }
}

#[test]
fn every_manifest_is_a_kubernetes_object_with_no_unknown_field() {
    for (what, manifests) in deployments_of_every_kind() {
        assert!(
            manifests.len() > 40,
            "{what}: only {} objects",
            manifests.len()
        );
        check_types(&manifests);
    }
}

#[test]
fn helm_and_kustomize_make_the_same_kinds_of_objects() {
    let kinds = |manifests: &[Manifest]| -> BTreeSet<String> {
        manifests
            .iter()
            .map(|m| m.kind().to_owned())
            .filter(|kind| kind != "Namespace")
            .collect()
    };
    let all = deployments_of_every_kind();
    let helm = kinds(&all[0].1);
    for (what, manifests) in &all {
        assert_eq!(kinds(manifests), helm, "{what}");
    }
}

#[test]
fn every_service_has_its_deployment_services_autoscaler_and_disruption_budget() {
    for (what, manifests) in deployments_of_every_kind() {
        for service in SERVICES {
            let deployments = find(&manifests, "Deployment", service);
            assert_eq!(deployments.len(), 1, "{what}: Deployment of {service}");
            let deployment = deployments[0];
            let labels = pod_labels(deployment);

            let services = find(&manifests, "Service", service);
            assert_eq!(services.len(), 2, "{what}: Services of {service}");
            let headless = services
                .iter()
                .filter(|s| s.object["spec"]["clusterIP"] == "None")
                .count();
            assert_eq!(headless, 1, "{what}: headless Service of {service}");
            for svc in &services {
                assert!(
                    matches_selector(
                        &serde_json::json!({"matchLabels": svc.object["spec"]["selector"]}),
                        labels
                    ),
                    "{what}: Service {} selects no pod of {service}",
                    svc.name()
                );
                let typed: Service = svc.typed().unwrap();
                let container = &pod_spec(deployment).containers[0];
                for port in typed.spec.unwrap().ports.unwrap_or_default() {
                    assert!(
                        declares_port(container, port.target_port.as_ref()),
                        "{what}: Service {} targets {:?}, which {service} does not declare",
                        svc.name(),
                        port.target_port
                    );
                }
            }

            let autoscalers = find(&manifests, "HorizontalPodAutoscaler", service);
            assert_eq!(autoscalers.len(), 1, "{what}: HPA of {service}");
            let hpa: HorizontalPodAutoscaler = autoscalers[0].typed().unwrap();
            let target = hpa.spec.unwrap().scale_target_ref;
            assert_eq!(
                (target.kind.as_str(), target.name.as_str()),
                ("Deployment", deployment.name()),
                "{what}"
            );

            let budgets = find(&manifests, "PodDisruptionBudget", service);
            assert_eq!(budgets.len(), 1, "{what}: PDB of {service}");
            assert!(
                matches_selector(&budgets[0].object["spec"]["selector"], labels),
                "{what}: the PDB of {service} selects none of its pods"
            );

            let account = pod_spec(deployment)
                .service_account_name
                .clone()
                .unwrap_or_default();
            assert!(
                of_kind(&manifests, "ServiceAccount")
                    .iter()
                    .any(|m| m.name() == account),
                "{what}: {service} runs as a missing ServiceAccount `{account}`"
            );

            let typed: Deployment = deployment.typed().unwrap();
            let rolling = typed
                .spec
                .unwrap()
                .strategy
                .and_then(|strategy| strategy.rolling_update)
                .expect("a rolling update");
            assert!(
                matches!(rolling.max_unavailable, Some(IntOrString::Int(0)))
                    || rolling.max_unavailable == Some(IntOrString::String("0".into())),
                "{what}: {service} may go below its replica count during a rollout"
            );
        }
    }
}

fn pod_spec(manifest: &Manifest) -> PodSpec {
    match manifest.kind() {
        "Deployment" => manifest
            .typed::<Deployment>()
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap(),
        "Job" => manifest
            .typed::<Job>()
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap(),
        kind => panic!("{kind} has no pod"),
    }
}

fn declares_port(container: &Container, port: Option<&IntOrString>) -> bool {
    let ports = container.ports.clone().unwrap_or_default();
    match port {
        Some(IntOrString::Int(number)) => ports.iter().any(|p| p.container_port == *number),
        Some(IntOrString::String(name)) => ports
            .iter()
            .any(|p| p.name.as_deref() == Some(name.as_str())),
        None => false,
    }
}

#[test]
fn every_container_is_pinned_sized_hardened_and_probed_on_its_own_ports() {
    for (what, manifests) in deployments_of_every_kind() {
        for workload in manifests
            .iter()
            .filter(|m| matches!(m.kind(), "Deployment" | "Job"))
        {
            let spec = pod_spec(workload);
            let name = format!("{what}: {} {}", workload.kind(), workload.name());
            let pod_security = spec.security_context.clone().unwrap_or_default();
            assert_eq!(pod_security.run_as_non_root, Some(true), "{name}");
            assert!(
                spec.automount_service_account_token.is_some(),
                "{name}: say whether the pod needs the API"
            );
            if workload.kind() == "Deployment" {
                assert!(
                    !spec
                        .topology_spread_constraints
                        .clone()
                        .unwrap_or_default()
                        .is_empty(),
                    "{name}: no topology spread"
                );
            }
            for container in &spec.containers {
                let image = container.image.clone().unwrap_or_default();
                let tag = image
                    .rsplit_once('/')
                    .map_or(image.as_str(), |(_, last)| last)
                    .split_once(':')
                    .map(|(_, tag)| tag);
                assert!(
                    matches!(tag, Some(tag) if !tag.is_empty() && tag != "latest"),
                    "{name}: image `{image}` is not pinned to a release"
                );
                let resources = container.resources.clone().unwrap_or_default();
                for (side, quantities) in [
                    ("requests", resources.requests),
                    ("limits", resources.limits),
                ] {
                    let quantities = quantities.unwrap_or_default();
                    for resource in ["cpu", "memory"] {
                        assert!(
                            quantities.contains_key(resource),
                            "{name}: {} has no {side}.{resource}",
                            container.name
                        );
                    }
                }
                let security = container.security_context.clone().unwrap_or_default();
                assert_eq!(security.read_only_root_filesystem, Some(true), "{name}");
                assert_eq!(security.allow_privilege_escalation, Some(false), "{name}");
                let dropped = security
                    .capabilities
                    .and_then(|capabilities| capabilities.drop)
                    .unwrap_or_default();
                assert!(
                    dropped.iter().any(|c| c == "ALL"),
                    "{name}: capabilities kept"
                );

                let probes = [
                    ("startup", container.startup_probe.clone()),
                    ("liveness", container.liveness_probe.clone()),
                    ("readiness", container.readiness_probe.clone()),
                ];
                if workload.kind() == "Deployment" {
                    assert!(
                        container.readiness_probe.is_some() && container.liveness_probe.is_some(),
                        "{name}: not probed"
                    );
                }
                for (kind, probe) in probes {
                    let Some(probe) = probe else { continue };
                    let port = if let Some(grpc) = &probe.grpc {
                        // The health service names of crates/platform/src/server.rs.
                        let expected = if kind == "readiness" {
                            "readiness"
                        } else {
                            "liveness"
                        };
                        assert_eq!(grpc.service.as_deref(), Some(expected), "{name}: {kind}");
                        IntOrString::Int(grpc.port)
                    } else if let Some(http) = &probe.http_get {
                        http.port.clone()
                    } else if let Some(tcp) = &probe.tcp_socket {
                        tcp.port.clone()
                    } else {
                        panic!("{name}: {kind} probe of an unknown kind");
                    };
                    assert!(
                        declares_port(container, Some(&port)),
                        "{name}: the {kind} probe asks port {port:?}, which is not declared"
                    );
                }
            }
            if SERVICES.contains(&component(workload)) {
                let environment = environment_of(&manifests, workload);
                let drain_ms: i64 = [
                    "PILLIVERY_SERVER__LAMEDUCK_MS",
                    "PILLIVERY_SERVER__GRACE_MS",
                ]
                .iter()
                .map(|key| environment[*key].parse::<i64>().unwrap())
                .sum();
                if workload.kind() == "Deployment" {
                    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
                    assert!(
                        grace * 1000 > drain_ms,
                        "{name}: termination grace {grace}s is not longer than the drain ({drain_ms} ms)"
                    );
                }
            }
        }
    }
}

/// A workload's environment as the pod sees it: the ConfigMaps it loads, its own values, and
/// for values from Secrets a plausible stand-in of the right shape (the Secrets live only in
/// the cluster).
fn environment_of(manifests: &[Manifest], workload: &Manifest) -> BTreeMap<String, String> {
    let container = pod_spec(workload).containers[0].clone();
    let mut environment = BTreeMap::new();
    for source in container.env_from.unwrap_or_default() {
        let name = source
            .config_map_ref
            .expect("env from ConfigMaps only")
            .name;
        let config_map = manifests
            .iter()
            .find(|m| m.kind() == "ConfigMap" && m.name() == name)
            .unwrap_or_else(|| panic!("{}: ConfigMap {name} is missing", workload.name()));
        let config_map: ConfigMap = config_map.typed().unwrap();
        environment.extend(config_map.data.unwrap_or_default());
    }
    for variable in container.env.unwrap_or_default() {
        let value = match (variable.value, variable.value_from) {
            (Some(value), _) => value,
            (None, Some(source)) => {
                let secret = source.secret_key_ref.expect("values from Secrets only");
                assert!(!secret.name.is_empty() && !secret.key.is_empty());
                secret_stand_in(&variable.name)
            }
            (None, None) => String::new(),
        };
        environment.insert(variable.name, value);
    }
    environment
}

fn secret_stand_in(variable: &str) -> String {
    use std::sync::OnceLock;
    static KEY: OnceLock<pillivery_platform::auth::SigningKey> = OnceLock::new();
    let key = KEY.get_or_init(pillivery_platform::auth::SigningKey::generate);
    match variable {
        "PILLIVERY_DATABASE__URL" => {
            "postgres://pillivery:password@postgres.example:5432/pillivery".into()
        }
        "PILLIVERY_REDIS_URL" => "redis://redis.example:6379".into(),
        "PILLIVERY_JWT_PRIVATE_KEY" => key.to_pkcs8_pem(),
        "PILLIVERY_JWKS" => pillivery_platform::auth::jwks(&[key.verification_key()]).to_string(),
        "PILLIVERY_PROVIDER__SECRET_KEY" => "DEV1234567890ABCDEF".into(),
        other => panic!("no stand-in for the secret setting {other}: add one here"),
    }
}

/// The service binaries (`pillivery-<service>`), next to this test (`.ci/run` builds them
/// before the tests; a missing one is built here) or in `PILLIVERY_SERVICE_BINARIES`.
fn service_binary(service: &str) -> PathBuf {
    let directory = match std::env::var_os("PILLIVERY_SERVICE_BINARIES") {
        Some(directory) => PathBuf::from(directory),
        None => std::env::current_exe()
            .expect("the test knows where it is")
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .to_path_buf(),
    };
    let binary = directory.join(format!("pillivery-{service}"));
    if !binary.exists() && std::env::var_os("PILLIVERY_SERVICE_BINARIES").is_none() {
        // `cargo test --workspace` builds no other package's binaries; build this one into the
        // same target directory (cargo has released its build lock while tests run).
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "-p", &format!("pillivery-{service}")])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building pillivery-{service} failed");
    }
    assert!(
        binary.exists(),
        "{} is missing: build the services first (cargo build -p pillivery-{service}; .ci/run does)",
        binary.display()
    );
    binary
}

#[test]
fn every_setting_is_one_the_binary_accepts() {
    for (what, manifests) in deployments_of_every_kind() {
        for workload in manifests
            .iter()
            .filter(|m| matches!(m.kind(), "Deployment" | "Job"))
        {
            let service = component(workload).trim_end_matches("-migration");
            if !SERVICES.contains(&service) {
                continue;
            }
            let environment = environment_of(&manifests, workload);
            let output = Command::new(service_binary(service))
                .arg("--check-config")
                .env_clear()
                .envs(&environment)
                .output()
                .expect("the binary runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{what}: {} {}: the binary refuses its configuration: {stderr}",
                workload.kind(),
                workload.name()
            );
            assert!(
                !stderr.contains("not settings of this service"),
                "{what}: {} {} sets variables the binary ignores: {stderr}",
                workload.kind(),
                workload.name()
            );
        }
    }
}

/// Edges (from component, to component) that both sides' policies allow, among the
/// workloads of `manifests`.
fn allowed_edges(manifests: &[Manifest]) -> BTreeSet<(String, String)> {
    let workloads: Vec<(&str, &Value)> = of_kind(manifests, "Deployment")
        .into_iter()
        .map(|d| (component(d), pod_labels(d)))
        .collect();
    let policies = of_kind(manifests, "NetworkPolicy");
    let selecting = |labels: &Value, direction: &str| -> Vec<&Manifest> {
        policies
            .iter()
            .copied()
            .filter(|p| {
                p.object["spec"]["policyTypes"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|t| t == direction))
                    && matches_selector(&p.object["spec"]["podSelector"], labels)
            })
            .collect()
    };
    let peer_allows = |peers: &Value, labels: &Value| -> bool {
        match peers.as_array() {
            // No peers listed: every source or destination.
            None => true,
            Some(peers) => peers.iter().any(|peer| {
                peer.get("namespaceSelector").is_none()
                    && peer.get("ipBlock").is_none()
                    && peer
                        .get("podSelector")
                        .is_some_and(|selector| matches_selector(selector, labels))
            }),
        }
    };
    let mut edges = BTreeSet::new();
    for (from, from_labels) in &workloads {
        for (to, to_labels) in &workloads {
            if from == to {
                continue;
            }
            let egress = selecting(from_labels, "Egress").iter().any(|policy| {
                policy.object["spec"]["egress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| peer_allows(&rule["to"], to_labels))
            });
            let ingress = selecting(to_labels, "Ingress").iter().any(|policy| {
                policy.object["spec"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| peer_allows(&rule["from"], from_labels))
            });
            if egress && ingress {
                edges.insert((from.to_string(), to.to_string()));
            }
        }
    }
    edges
}

#[test]
fn network_policies_allow_exactly_the_call_graph() {
    for (what, manifests) in deployments_of_every_kind() {
        assert_eq!(allowed_edges(&manifests), call_graph(), "{what}");
        // Deny-all first: one policy with no rule selects every pod of the release, so a pod
        // without its own policy can talk to nobody.
        let deny_all: Vec<&Manifest> = of_kind(&manifests, "NetworkPolicy")
            .into_iter()
            .filter(|p| {
                p.object["spec"]
                    .get("ingress")
                    .is_none_or(|rules| rules == &serde_json::json!([]))
                    && p.object["spec"]
                        .get("egress")
                        .is_none_or(|rules| rules == &serde_json::json!([]))
            })
            .filter(|p| {
                of_kind(&manifests, "Deployment")
                    .iter()
                    .all(|d| matches_selector(&p.object["spec"]["podSelector"], pod_labels(d)))
            })
            .collect();
        assert_eq!(
            deny_all.len(),
            1,
            "{what}: no deny-all policy over every pod"
        );
        // Outside the cluster: the databases and Redis for every service, the payment
        // gateway's HTTPS for payment only; nothing but DNS for the edge.
        for deployment in of_kind(&manifests, "Deployment") {
            let service = component(deployment);
            let ports: BTreeSet<i64> = of_kind(&manifests, "NetworkPolicy")
                .iter()
                .filter(|p| {
                    matches_selector(&p.object["spec"]["podSelector"], pod_labels(deployment))
                })
                .flat_map(|p| {
                    p.object["spec"]["egress"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter(|rule| {
                    rule["to"]
                        .as_array()
                        .is_some_and(|peers| peers.iter().any(|peer| peer.get("ipBlock").is_some()))
                })
                .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|port| port["port"].as_i64())
                .collect();
            match service {
                "edge" => assert!(ports.is_empty(), "{what}: edge egress {ports:?}"),
                _ => {
                    assert!(
                        ports.contains(&6379),
                        "{what}: {service} cannot reach Redis"
                    );
                    if service != "gateway" {
                        assert!(
                            ports.contains(&5432),
                            "{what}: {service} cannot reach its database"
                        );
                    }
                    let https = ports.contains(&443);
                    let discovers = environment_of(&manifests, deployment)
                        .values()
                        .any(|value| value.starts_with("kubernetes:///"));
                    assert_eq!(
                        https,
                        service == "payment" || discovers,
                        "{what}: {service}'s HTTPS egress"
                    );
                }
            }
        }
    }
}

#[test]
fn peers_are_found_where_the_chart_says_and_only_discoverers_may_read_the_api() {
    for (what, manifests) in deployments_of_every_kind() {
        let edges = allowed_edges(&manifests);
        for deployment in of_kind(&manifests, "Deployment") {
            let service = component(deployment);
            if !SERVICES.contains(&service) {
                continue;
            }
            let environment = environment_of(&manifests, deployment);
            let mut discovers = false;
            for (key, target) in &environment {
                // The gateway's `upstreams.<peer>.target`, the other services' `<peer>.target`.
                let Some(peer) = key
                    .strip_prefix("PILLIVERY_")
                    .map(|rest| rest.strip_prefix("UPSTREAMS__").unwrap_or(rest))
                    .and_then(|rest| rest.strip_suffix("__TARGET"))
                else {
                    continue;
                };
                let peer = peer.to_ascii_lowercase();
                assert!(
                    edges.contains(&(service.to_owned(), peer.clone())),
                    "{what}: {service} calls {peer}, which its policies do not allow"
                );
                let (service_name, port) = if let Some(rest) = target.strip_prefix("kubernetes:///")
                {
                    discovers = true;
                    rest.rsplit_once(':').unwrap()
                } else if let Some(rest) = target.strip_prefix("dns://") {
                    rest.rsplit_once(':').unwrap()
                } else {
                    panic!("{what}: {key}={target} is not a discovered target");
                };
                let svc = manifests
                    .iter()
                    .find(|m| m.kind() == "Service" && m.name() == service_name)
                    .unwrap_or_else(|| {
                        panic!("{what}: {key} names a missing Service {service_name}")
                    });
                assert_eq!(component(svc), peer, "{what}: {key}");
                let has_port = svc.object["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| {
                        p["name"] == port
                            || p["port"]
                                .as_i64()
                                .is_some_and(|number| number.to_string() == port)
                    });
                assert!(has_port, "{what}: {key}: {service_name} has no port {port}");
            }
            let account = pod_spec(deployment)
                .service_account_name
                .unwrap_or_default();
            let bound_roles: Vec<String> = of_kind(&manifests, "RoleBinding")
                .into_iter()
                .filter(|binding| {
                    binding.object["subjects"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s["kind"] == "ServiceAccount" && s["name"] == account.as_str())
                })
                .map(|binding| {
                    binding.object["roleRef"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            let can_watch_slices = bound_roles.iter().any(|role| {
                let role = of_kind(&manifests, "Role")
                    .into_iter()
                    .find(|r| r.name() == role)
                    .expect("bound Role exists");
                let role: Role = role.typed().unwrap();
                role.rules.unwrap_or_default().iter().any(|rule| {
                    let has = |list: &Option<Vec<String>>, item: &str| {
                        list.as_ref()
                            .is_some_and(|list| list.iter().any(|x| x == item))
                    };
                    has(&rule.api_groups, "discovery.k8s.io")
                        && rule
                            .resources
                            .as_ref()
                            .is_some_and(|r| r.iter().any(|x| x == "endpointslices"))
                        && rule.verbs.contains(&"list".to_owned())
                        && rule.verbs.contains(&"watch".to_owned())
                })
            });
            assert_eq!(
                can_watch_slices, discovers,
                "{what}: {service} discovers from EndpointSlices: {discovers}, may watch them: {can_watch_slices}"
            );
            assert_eq!(
                pod_spec(deployment).automount_service_account_token,
                Some(discovers),
                "{what}: {service} mounts an API token it does not need (or lacks one)"
            );
        }
    }
}

#[test]
fn the_values_schema_rejects_typos_and_wrong_types() {
    let cases = [
        ("replicaz", "services:\n  gateway:\n    replicaz: 3\n"),
        ("replicas", "services:\n  gateway:\n    replicas: \"3\"\n"),
        ("imageTag", "imageTag: v1\n"),
        ("tag", "image:\n  tag: latest\n"),
        ("enabled", "edge:\n  tls:\n    enabled: \"yes\"\n"),
        ("calls", "services:\n  order:\n    calls: [inventory]\n"),
        ("discovery", "discovery: consul\n"),
        (
            "secrets",
            "secrets:\n  redis:\n    nmae: pillivery-redis\n    key: url\n",
        ),
    ];
    let directory = tempfile::tempdir().unwrap();
    for (field, text) in cases {
        let path = directory.path().join(format!("{field}.yaml"));
        std::fs::write(&path, text).unwrap();
        match render_chart(&path, "shop", "shop") {
            Rendered::Refused(error) => assert!(
                error.contains(field) || error.contains("latest"),
                "{text}: refused, but the message does not name `{field}`: {error}"
            ),
            Rendered::Manifests(_) => panic!("the schema accepted {text:?}"),
        }
    }
}

/// Every Envoy config: the edge's in each rendering, and the transcoder alternative.
#[test]
fn every_envoy_config_is_valid_against_envoys_api() {
    let mut configs: Vec<(String, String)> = Vec::new();
    let mut with_tls = 0;
    for (what, manifests) in deployments_of_every_kind() {
        let edge = find(&manifests, "ConfigMap", "edge");
        assert_eq!(edge.len(), 1, "{what}: the edge's ConfigMap");
        let config = edge[0].object["data"]["envoy.yaml"]
            .as_str()
            .unwrap()
            .to_owned();
        // The gateway cluster must name the gateway's headless Service.
        let headless = find(&manifests, "Service", "gateway")
            .into_iter()
            .find(|s| s.object["spec"]["clusterIP"] == "None")
            .expect("the gateway's headless Service")
            .name()
            .to_owned();
        assert!(
            config.contains(&format!("address: {headless}\n")),
            "{what}: the edge does not send to {headless}"
        );
        configs.push((what, config));
    }
    let root = repo_root();
    for file in ["k8s/envoy/transcoder.yaml", "k8s/overlays/prod/envoy.yaml"] {
        configs.push((
            file.to_owned(),
            std::fs::read_to_string(root.join(file)).unwrap(),
        ));
    }
    for (what, yaml) in &configs {
        let bootstrap = envoy_bootstrap(what, yaml).unwrap_or_else(|error| panic!("{error}"));
        let listeners = bootstrap
            .get_field_by_name("static_resources")
            .unwrap()
            .as_message()
            .unwrap()
            .get_field_by_name("listeners")
            .unwrap()
            .as_list()
            .unwrap()
            .len();
        assert!(listeners >= 1, "{what}: no listener");
        let value: Value = serde_saphyr_value(yaml);
        let mut types = Vec::new();
        any_types(&value, &mut types);
        assert!(types.len() >= 4, "{what}: only {types:?}");
        if yaml.contains("DownstreamTlsContext") {
            with_tls += 1;
        }
    }
    // Production (chart values and kustomize overlay) serves HTTPS.
    assert!(with_tls >= 3, "TLS listeners in {with_tls} configs");
}

fn serde_saphyr_value(yaml: &str) -> Value {
    pillivery_deploy_checks::parse_yaml_documents("envoy", yaml)
        .unwrap()
        .remove(0)
        .object
}

#[test]
fn the_transcoder_exposes_services_of_our_contract() {
    let text = std::fs::read_to_string(repo_root().join("k8s/envoy/transcoder.yaml")).unwrap();
    let config = serde_saphyr_value(&text);
    let filter = &config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"][0]["typed_config"];
    let services = filter["services"].as_array().expect("services");
    assert!(!services.is_empty());
    let pool = pillivery_proto::descriptor_pool();
    for service in services {
        let name = service.as_str().unwrap();
        assert!(
            pool.get_service_by_name(name).is_some(),
            "{name} is not in proto/"
        );
    }
}

#[test]
fn the_kustomize_base_is_the_chart_rendered() {
    let root = repo_root();
    let directory = tempfile::tempdir().unwrap();
    let fresh = directory.path().join("pillivery.yaml");
    generate_kustomize_base(&fresh);
    assert!(
        std::fs::read_to_string(&fresh).unwrap()
            == std::fs::read_to_string(root.join("k8s/base/pillivery.yaml")).unwrap(),
        "k8s/base/pillivery.yaml is out of date: regenerate it (docs/deploy.md, \"The kustomize base\")"
    );
    let envoy = directory.path().join("envoy.yaml");
    let output = Command::new(pillivery_deploy_checks::helm_python())
        .arg(root.join("k8s/checks/helm.py"))
        .arg("envoy-config")
        .arg(root.join("charts/pillivery"))
        .arg(root.join("k8s/overlays/prod/edge-values.yaml"))
        .arg(&envoy)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        std::fs::read_to_string(&envoy).unwrap()
            == std::fs::read_to_string(root.join("k8s/overlays/prod/envoy.yaml")).unwrap(),
        "k8s/overlays/prod/envoy.yaml is out of date: regenerate it (docs/deploy.md)"
    );
}

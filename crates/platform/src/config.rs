//! Configuration: defaults in code, then an optional file, then `PILLIVERY_…` environment
//! variables; validated before any port is bound.
//!
//! Top-level keys map to flat variables (`http_port` ← `PILLIVERY_HTTP_PORT`); nested keys use a
//! double underscore (`database.url` ← `PILLIVERY_DATABASE__URL`). The environment is passed in
//! as a map rather than read from the process inside, so tests never touch the real environment.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The exit code for bad configuration (`EX_CONFIG` from sysexits.h).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// A service's typed configuration.
pub trait ServiceConfig: DeserializeOwned + Serialize + Default {
    /// Checks every rule that does not need I/O; the error is one line for an operator.
    fn validate(&self) -> Result<(), String>;

    /// How this service logs and traces.
    fn telemetry(&self) -> &crate::telemetry::TelemetryConfig;
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// The process environment's `PILLIVERY_…` variables, for [`load`].
pub fn process_environment() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("PILLIVERY_"))
        .collect()
}

/// Whether a variable is a setting: `PILLIVERY_…`, except the variable naming the file and the
/// test suite's own variables, which are not keys of any service's configuration.
fn is_setting(name: &str) -> bool {
    name.starts_with("PILLIVERY_")
        && name != "PILLIVERY_CONFIG_FILE"
        && !name.starts_with("PILLIVERY_TEST_")
}

/// Layers defaults → `file` → `environment` and validates the result.
pub fn load<C: ServiceConfig>(
    file: Option<&Path>,
    environment: &HashMap<String, String>,
) -> Result<C, ConfigError> {
    let defaults = config::Config::try_from(&C::default())
        .map_err(|error| ConfigError::Invalid(error.to_string()))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "not found".into(),
            });
        }
        builder = builder.add_source(config::File::from(path));
    }
    // Variables are often shared by several services (an env file, a ConfigMap): one naming a
    // top-level key this service does not have is another service's setting and is skipped
    // with a note. Inside a known key (`PILLIVERY_DATABASE__URLL`) and in the file, unknown
    // keys are errors, so typos do not pass silently.
    let mut skipped = Vec::new();
    let environment: HashMap<String, String> = environment
        .iter()
        .filter(|(name, _)| is_setting(name))
        .filter(|(name, _)| {
            let key = name["PILLIVERY_".len()..]
                .split("__")
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let ours = is_top_level_key::<C>(&key);
            if !ours {
                skipped.push(name.to_string());
            }
            ours
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !skipped.is_empty() {
        skipped.sort();
        eprintln!(
            "pillivery: not settings of this service, ignored: {}",
            skipped.join(", ")
        );
    }
    builder = builder.add_source(
        config::Environment::with_prefix("PILLIVERY")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(environment)),
    );
    let loaded: C = builder
        .build()
        .and_then(|merged| merged.try_deserialize())
        .map_err(|error| ConfigError::Invalid(one_line(&error.to_string())))?;
    loaded.validate().map_err(ConfigError::Invalid)?;
    Ok(loaded)
}

/// Whether `key` is a top-level field of `C`. Asked of serde itself rather than read from the
/// serialized defaults, which leave out fields skipped when empty (`skip_serializing_if` on an
/// `Option`): `{key: null}` is refused as an unknown field only when `C` has no such field.
fn is_top_level_key<C: DeserializeOwned>(key: &str) -> bool {
    let probe = serde_json::Value::Object(serde_json::Map::from_iter([(
        key.to_owned(),
        serde_json::Value::Null,
    )]));
    match serde_json::from_value::<C>(probe) {
        Ok(_) => true,
        Err(error) => !error.to_string().starts_with("unknown field"),
    }
}

/// Prints the error as one line on stderr and exits with [`EXIT_BAD_CONFIG`].
pub fn exit_on_error<C>(result: Result<C, ConfigError>) -> C {
    match result {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pillivery: {}", one_line(&error.to_string()));
            std::process::exit(EXIT_BAD_CONFIG)
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        http_port: u16,
        name: String,
        database: Nested,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        url: String,
        max_connections: u32,
    }

    impl ServiceConfig for Example {
        fn telemetry(&self) -> &crate::telemetry::TelemetryConfig {
            static DEFAULT: std::sync::OnceLock<crate::telemetry::TelemetryConfig> =
                std::sync::OnceLock::new();
            DEFAULT.get_or_init(Default::default)
        }

        fn validate(&self) -> Result<(), String> {
            if self.http_port == 1 {
                return Err("http_port must not be 1".into());
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("example.toml");
        std::fs::write(
            &file,
            "name = \"from-file\"\nhttp_port = 9000\n[database]\nurl = \"sqlite://file\"\n",
        )
        .unwrap();
        let loaded: Example = load(
            Some(&file),
            &env(&[
                ("PILLIVERY_HTTP_PORT", "8081"),
                ("PILLIVERY_DATABASE__MAX_CONNECTIONS", "7"),
                ("OTHER_VARIABLE", "ignored"),
                ("PILLIVERY_CONFIG_FILE", "/etc/pillivery.toml"),
                ("PILLIVERY_TEST_REDIS_URL", "redis://127.0.0.1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            loaded,
            Example {
                http_port: 8081,
                name: "from-file".into(),
                database: Nested {
                    url: "sqlite://file".into(),
                    max_connections: 7
                },
                secret: None,
            }
        );
    }

    #[test]
    fn a_bad_value_is_one_clear_error() {
        let error = load::<Example>(None, &env(&[("PILLIVERY_HTTP_PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("http_port"), "{error}");
        assert!(!error.contains('\n'));
        let error = load::<Example>(None, &env(&[("PILLIVERY_HTTP_PORT", "1")]))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "configuration: http_port must not be 1");
    }

    #[test]
    fn other_services_variables_are_skipped_but_typos_inside_a_key_are_not() {
        let loaded: Example = load(
            None,
            &env(&[("PILLIVERY_ADMIN_EMAIL", "a@b.c"), ("PILLIVERY_NAME", "x")]),
        )
        .unwrap();
        assert_eq!(loaded.name, "x");
        let error = load::<Example>(None, &env(&[("PILLIVERY_DATABASE__URLL", "x")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("urll"), "{error}");
    }

    #[test]
    fn a_field_left_out_of_the_serialized_defaults_is_still_a_setting() {
        let loaded: Example = load(None, &env(&[("PILLIVERY_SECRET", "s3cret")])).unwrap();
        assert_eq!(loaded.secret.as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_missing_file_is_reported() {
        let error =
            load::<Example>(Some(Path::new("/nonexistent/pillivery.toml")), &env(&[])).unwrap_err();
        assert!(matches!(error, ConfigError::File { .. }));
    }
}

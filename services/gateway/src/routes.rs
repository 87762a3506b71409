//! The route table, read from the contracts' descriptors.
//!
//! Every RPC of an exposed service that carries a `google.api.http` binding becomes one route per
//! binding (the main one and each `additional_bindings`). Its `pillivery.api.v1.method` option
//! says who may call it, whether it needs an `Idempotency-Key`, its deadline, body limit and
//! success status. An RPC without a binding gets no route: internal RPCs are unreachable here.

use std::collections::HashMap;

use pillivery_proto::api::{AuthPolicy, MethodPolicy};
use pillivery_proto::google::api::{HttpRule, http_rule};
use prost_reflect::{DescriptorPool, FieldDescriptor, MethodDescriptor, Value};

/// The HTTP verbs a binding can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

/// One piece of a path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{field}`: one path segment into a request field (a dotted path into nested messages).
    Variable {
        field_path: Vec<String>,
    },
    /// `{field=literal}`: the segment must be exactly `literal`, which is also set on the field.
    FixedVariable {
        field_path: Vec<String>,
        value: String,
    },
}

/// Which part of the request message the body fills.
#[derive(Clone, Debug)]
pub enum BodyBinding {
    /// No body (GET/DELETE): fields not in the path come from the query string.
    None,
    /// `body: "*"`: every field not bound by the path.
    Whole,
    /// `body: "field"`: the body is that field's JSON; the rest come from the query string.
    Field(FieldDescriptor),
}

/// One REST route.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: MethodDescriptor,
    pub verb: Verb,
    pub segments: Vec<Segment>,
    pub body: BodyBinding,
    pub auth: AuthPolicy,
    pub idempotency_key_required: bool,
    pub deadline_ms: Option<u32>,
    pub max_body_bytes: Option<u32>,
    pub success_status: u16,
    /// The RPC has no side effects or is idempotent, so an unanswered attempt may be resent.
    pub retryable: bool,
    /// The RPC changes nothing (`NO_SIDE_EFFECTS`): it may be asked with a partly invalid request
    /// so its own violations are reported together with the gateway's.
    pub read_only: bool,
    /// The upstream (downstream service) that serves this RPC.
    pub upstream: String,
    /// Fields that only a path literal sets (`{listing=on-sale}` in any binding of the RPC):
    /// never accepted from a query string or body.
    pub path_only_fields: Vec<String>,
    /// Response headers filled from string fields of the answer.
    pub response_headers: Vec<HeaderFromField>,
    /// A success answers 302 to the URL in this string field of the answer, with no body.
    pub redirect_field: Option<FieldDescriptor>,
}

/// A response header whose value is `prefix` + a string field of the answer.
#[derive(Clone, Debug)]
pub struct HeaderFromField {
    pub name: http::HeaderName,
    pub field: FieldDescriptor,
    pub prefix: String,
}

impl Route {
    /// The gRPC path, `/package.Service/Method`.
    pub fn grpc_path(&self) -> String {
        format!(
            "/{}/{}",
            self.method.parent_service().full_name(),
            self.method.name()
        )
    }

    /// The path as axum matches it: variables are `{p0}`, `{p1}`...
    pub fn axum_path(&self) -> String {
        let mut path = String::new();
        let mut index = 0;
        for segment in &self.segments {
            path.push('/');
            match segment {
                Segment::Literal(text) | Segment::FixedVariable { value: text, .. } => {
                    path.push_str(text)
                }
                Segment::Variable { .. } => {
                    path.push_str(&format!("{{p{index}}}"));
                    index += 1;
                }
            }
        }
        path
    }

    /// The path as OpenAPI shows it, with the fields' JSON names: `/api/items/{itemId}`.
    pub fn openapi_path(&self) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            match segment {
                Segment::Literal(text) | Segment::FixedVariable { value: text, .. } => {
                    path.push_str(text)
                }
                Segment::Variable { field_path } => {
                    path.push('{');
                    path.push_str(&json_field_path(&self.method, field_path));
                    path.push('}');
                }
            }
        }
        path
    }

    /// The variables in order, as field paths.
    pub fn path_variables(&self) -> Vec<&[String]> {
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Variable { field_path } => Some(field_path.as_slice()),
                _ => None,
            })
            .collect()
    }

    /// Fields set by the path (variables and fixed variables) or settable only by a path:
    /// not taken from query or body.
    pub fn path_bound_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> =
            self.segments
                .iter()
                .filter_map(|segment| match segment {
                    Segment::Variable { field_path }
                    | Segment::FixedVariable { field_path, .. } => field_path.first().cloned(),
                    Segment::Literal(_) => None,
                })
                .collect();
        fields.extend(self.path_only_fields.iter().cloned());
        fields
    }
}

/// The JSON (lowerCamelCase) spelling of a dotted field path.
pub fn json_field_path(method: &MethodDescriptor, field_path: &[String]) -> String {
    let mut message = method.input();
    let mut names = Vec::new();
    for name in field_path {
        match message.get_field_by_name(name) {
            Some(field) => {
                names.push(field.json_name().to_owned());
                if let prost_reflect::Kind::Message(inner) = field.kind() {
                    message = inner;
                }
            }
            None => names.push(name.clone()),
        }
    }
    names.join(".")
}

/// Builds the routes of `services` (full proto names → upstream names).
pub fn build_routes(
    pool: &DescriptorPool,
    services: &HashMap<String, String>,
) -> Result<Vec<Route>, String> {
    let http_extension = pool
        .get_extension_by_name("google.api.http")
        .ok_or("descriptor set lacks google.api.http")?;
    let policy_extension = pool
        .get_extension_by_name("pillivery.api.v1.method")
        .ok_or("descriptor set lacks pillivery.api.v1.method")?;
    let mut routes = Vec::new();
    let mut names: Vec<_> = services.iter().collect();
    names.sort();
    for (service_name, upstream) in names {
        let service = pool
            .get_service_by_name(service_name)
            .ok_or_else(|| format!("no service `{service_name}` in the contracts"))?;
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http_extension) {
                continue;
            }
            let rule: HttpRule = extension_as(&options, &http_extension)
                .map_err(|error| format!("{}: bad google.api.http: {error}", method.full_name()))?;
            let policy: MethodPolicy = if options.has_extension(&policy_extension) {
                extension_as(&options, &policy_extension).map_err(|error| {
                    format!(
                        "{}: bad pillivery.api.v1.method: {error}",
                        method.full_name()
                    )
                })?
            } else {
                MethodPolicy::default()
            };
            let auth = AuthPolicy::try_from(policy.auth).unwrap_or(AuthPolicy::Unspecified);
            if auth == AuthPolicy::Unspecified {
                return Err(format!(
                    "{} has an HTTP binding but no (pillivery.api.v1.method).auth",
                    method.full_name()
                ));
            }
            let idempotency_level = options.get_field_by_name("idempotency_level");
            let retryable = matches!(idempotency_level.as_deref(), Some(Value::EnumNumber(1 | 2)));
            let read_only = matches!(idempotency_level.as_deref(), Some(Value::EnumNumber(1)));
            let mut bindings = vec![rule.clone()];
            bindings.extend(rule.additional_bindings.iter().cloned());
            for binding in bindings {
                let (verb, template) = match &binding.pattern {
                    Some(http_rule::Pattern::Get(path)) => (Verb::Get, path),
                    Some(http_rule::Pattern::Post(path)) => (Verb::Post, path),
                    Some(http_rule::Pattern::Put(path)) => (Verb::Put, path),
                    Some(http_rule::Pattern::Patch(path)) => (Verb::Patch, path),
                    Some(http_rule::Pattern::Delete(path)) => (Verb::Delete, path),
                    _ => {
                        return Err(format!(
                            "{}: only get/post/put/patch/delete bindings are supported",
                            method.full_name()
                        ));
                    }
                };
                let segments = parse_template(template)
                    .map_err(|error| format!("{}: {error}", method.full_name()))?;
                let body = match binding.body.as_str() {
                    "" => BodyBinding::None,
                    "*" => BodyBinding::Whole,
                    field => BodyBinding::Field(
                        method.input().get_field_by_name(field).ok_or_else(|| {
                            format!(
                                "{}: body field `{field}` does not exist",
                                method.full_name()
                            )
                        })?,
                    ),
                };
                let route = Route {
                    method: method.clone(),
                    verb,
                    segments,
                    body,
                    auth,
                    idempotency_key_required: policy.idempotency_key_required,
                    deadline_ms: (policy.deadline_ms > 0).then_some(policy.deadline_ms),
                    max_body_bytes: (policy.max_body_bytes > 0).then_some(policy.max_body_bytes),
                    success_status: if policy.success_status == 0 {
                        200
                    } else {
                        u16::try_from(policy.success_status)
                            .map_err(|_| format!("{}: bad success_status", method.full_name()))?
                    },
                    retryable,
                    read_only,
                    upstream: upstream.clone(),
                    path_only_fields: Vec::new(),
                    response_headers: Vec::new(),
                    redirect_field: None,
                };
                check_fields_exist(&route)?;
                let route = Route {
                    response_headers: policy
                        .response_headers
                        .iter()
                        .map(|header| {
                            Ok(HeaderFromField {
                                name: http::HeaderName::from_bytes(header.name.as_bytes())
                                    .map_err(|_| {
                                        format!(
                                            "{}: bad header name `{}`",
                                            method.full_name(),
                                            header.name
                                        )
                                    })?,
                                field: output_string_field(&method, &header.field)?,
                                prefix: header.prefix.clone(),
                            })
                        })
                        .collect::<Result<_, String>>()?,
                    redirect_field: if policy.redirect_field.is_empty() {
                        None
                    } else {
                        Some(output_string_field(&method, &policy.redirect_field)?)
                    },
                    ..route
                };
                routes.push(route);
            }
        }
    }
    let mut path_only: HashMap<String, Vec<String>> = HashMap::new();
    for route in &routes {
        for segment in &route.segments {
            if let Segment::FixedVariable { field_path, .. } = segment
                && let Some(first) = field_path.first()
            {
                path_only
                    .entry(route.method.full_name().to_owned())
                    .or_default()
                    .push(first.clone());
            }
        }
    }
    for route in &mut routes {
        route.path_only_fields = path_only
            .get(route.method.full_name())
            .cloned()
            .unwrap_or_default();
    }
    let mut seen = HashMap::new();
    for route in &routes {
        if let Some(other) = seen.insert((route.verb, route.axum_path()), route.method.full_name())
        {
            return Err(format!(
                "{} {} is bound twice ({} and {})",
                route.verb.as_str(),
                route.openapi_path(),
                other,
                route.method.full_name()
            ));
        }
    }
    Ok(routes)
}

/// A top-level string field of the method's answer, for headers and redirects.
fn output_string_field(method: &MethodDescriptor, name: &str) -> Result<FieldDescriptor, String> {
    let field = method
        .output()
        .get_field_by_name(name)
        .ok_or_else(|| format!("{}: the answer has no field `{name}`", method.full_name()))?;
    if field.kind() != prost_reflect::Kind::String || field.is_list() {
        return Err(format!(
            "{}: `{name}` is not a string field",
            method.full_name()
        ));
    }
    Ok(field)
}

fn extension_as<T: prost::Message + Default>(
    options: &prost_reflect::DynamicMessage,
    extension: &prost_reflect::ExtensionDescriptor,
) -> Result<T, String> {
    match options.get_extension(extension).as_ref() {
        Value::Message(message) => message
            .transcode_to::<T>()
            .map_err(|error| error.to_string()),
        other => Err(format!("unexpected option value {other:?}")),
    }
}

fn check_fields_exist(route: &Route) -> Result<(), String> {
    for segment in &route.segments {
        let field_path = match segment {
            Segment::Variable { field_path } | Segment::FixedVariable { field_path, .. } => {
                field_path
            }
            Segment::Literal(_) => continue,
        };
        let mut message = route.method.input();
        for (position, name) in field_path.iter().enumerate() {
            let field = message.get_field_by_name(name).ok_or_else(|| {
                format!(
                    "{}: path field `{}` does not exist",
                    route.method.full_name(),
                    field_path.join(".")
                )
            })?;
            match field.kind() {
                prost_reflect::Kind::Message(inner) if position + 1 < field_path.len() => {
                    message = inner
                }
                _ if position + 1 < field_path.len() => {
                    return Err(format!(
                        "{}: `{}` is not a message",
                        route.method.full_name(),
                        name
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Parses `/api/items/{item_id}`, `/api/items/{listing=on-sale}`, `/api/admin/items:import`.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let rest = template
        .strip_prefix('/')
        .ok_or_else(|| format!("path `{template}` must start with /"))?;
    let mut segments = Vec::new();
    for part in rest.split('/') {
        if part.is_empty() {
            return Err(format!("path `{template}` has an empty segment"));
        }
        if let Some(inner) = part.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .ok_or_else(|| format!("path `{template}`: unclosed variable in `{part}`"))?;
            let (field, pattern) = match inner.split_once('=') {
                Some((field, pattern)) => (field, Some(pattern)),
                None => (inner, None),
            };
            let field_path: Vec<String> = field.split('.').map(str::to_owned).collect();
            if field_path.iter().any(|name| {
                name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }) {
                return Err(format!("path `{template}`: bad field path `{field}`"));
            }
            match pattern {
                None | Some("*") => segments.push(Segment::Variable { field_path }),
                Some(value)
                    if !value.is_empty()
                        && value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)) =>
                {
                    segments.push(Segment::FixedVariable {
                        field_path,
                        value: value.to_owned(),
                    })
                }
                Some(other) => {
                    return Err(format!(
                        "path `{template}`: pattern `{other}` is not supported (use a literal or *)"
                    ));
                }
            }
        } else if part.contains(['{', '}', '*']) {
            return Err(format!("path `{template}`: unsupported segment `{part}`"));
        } else {
            segments.push(Segment::Literal(part.to_owned()));
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert_eq!(
            parse_template("/api/items/{item_id}").unwrap(),
            vec![
                Segment::Literal("api".into()),
                Segment::Literal("items".into()),
                Segment::Variable {
                    field_path: vec!["item_id".into()]
                }
            ]
        );
        assert_eq!(
            parse_template("/api/items/{listing=on-sale}").unwrap()[2],
            Segment::FixedVariable {
                field_path: vec!["listing".into()],
                value: "on-sale".into()
            }
        );
        assert_eq!(
            parse_template("/api/admin/items:import").unwrap()[2],
            Segment::Literal("items:import".into())
        );
        assert!(parse_template("api/items").is_err());
        assert!(parse_template("/api//items").is_err());
        assert!(parse_template("/api/{name=**}").is_err());
        assert!(parse_template("/api/{item_id").is_err());
    }

    fn catalog_routes(service: &str) -> Vec<Route> {
        let services = HashMap::from([(service.to_owned(), "catalog".to_owned())]);
        build_routes(pillivery_proto::descriptor_pool(), &services).unwrap()
    }

    #[test]
    fn every_binding_of_the_catalog_becomes_a_route() {
        let routes = catalog_routes("pillivery.catalog.v1.CatalogService");
        let mut paths: Vec<String> = routes
            .iter()
            .map(|route| format!("{} {}", route.verb.as_str(), route.openapi_path()))
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            vec![
                "get /api/categories",
                "get /api/items",
                "get /api/items/brands",
                "get /api/items/categories",
                "get /api/items/main",
                "get /api/items/on-sale",
                "get /api/items/search",
                "get /api/items/{itemId}",
            ]
        );
        assert!(routes.iter().all(|route| route.auth == AuthPolicy::Public));
        // `listing` is set only by the `/api/items/on-sale` path, on every binding.
        let search = routes
            .iter()
            .find(|route| route.openapi_path() == "/api/items")
            .unwrap();
        assert!(search.path_bound_fields().contains(&"listing".to_owned()));
        assert!(routes.iter().all(|route| route.retryable));
        let item = routes
            .iter()
            .find(|route| route.method.name() == "GetItem")
            .unwrap();
        assert_eq!(item.axum_path(), "/api/items/{p0}");
        assert_eq!(
            item.grpc_path(),
            "/pillivery.catalog.v1.CatalogService/GetItem"
        );
    }

    #[test]
    fn admin_policies_and_statuses_come_from_the_options() {
        let routes = catalog_routes("pillivery.catalog.v1.CatalogAdminService");
        let create = routes
            .iter()
            .find(|route| route.method.name() == "CreateItem")
            .unwrap();
        assert_eq!(create.auth, AuthPolicy::Admin);
        assert_eq!(create.success_status, 201);
        assert!(!create.retryable);
        assert!(matches!(&create.body, BodyBinding::Field(field) if field.name() == "item"));
        let import = routes
            .iter()
            .find(|route| route.method.name() == "ImportItems")
            .unwrap();
        assert_eq!(import.max_body_bytes, Some(64 * 1024 * 1024));
        assert_eq!(import.openapi_path(), "/api/admin/items:import");
        let delete = routes
            .iter()
            .find(|route| route.method.name() == "DeleteItem")
            .unwrap();
        assert_eq!(delete.success_status, 204);
    }

    #[test]
    fn response_headers_and_redirects_come_from_the_options() {
        let services = HashMap::from([
            (
                "pillivery.user.v1.AuthService".to_owned(),
                "user".to_owned(),
            ),
            (
                "pillivery.user.v1.OAuthService".to_owned(),
                "user".to_owned(),
            ),
        ]);
        let routes = build_routes(pillivery_proto::descriptor_pool(), &services).unwrap();
        let login = routes
            .iter()
            .find(|route| route.method.name() == "Login")
            .unwrap();
        let headers: Vec<(String, String, String)> = login
            .response_headers
            .iter()
            .map(|header| {
                (
                    header.name.to_string(),
                    header.field.name().to_owned(),
                    header.prefix.clone(),
                )
            })
            .collect();
        assert_eq!(
            headers,
            [
                (
                    "authorization".into(),
                    "access_token".into(),
                    "Bearer ".into()
                ),
                ("refresh".into(), "refresh_token".into(), String::new()),
            ]
        );
        let authorize = routes
            .iter()
            .find(|route| route.method.name() == "StartOAuth")
            .unwrap();
        assert_eq!(
            authorize.redirect_field.as_ref().unwrap().name(),
            "location"
        );
        assert_eq!(
            authorize.openapi_path(),
            "/api/auth/oauth2/{provider}/authorize"
        );
    }

    #[test]
    fn internal_rpcs_get_no_route() {
        let routes = catalog_routes("pillivery.catalog.v1.CatalogInternalService");
        assert!(routes.is_empty());
    }

    #[test]
    fn an_unknown_service_is_a_startup_error() {
        let services = HashMap::from([("pillivery.nope.v1.Nope".to_owned(), "x".to_owned())]);
        assert!(build_routes(pillivery_proto::descriptor_pool(), &services).is_err());
    }
}

//! The public REST port: one axum route per binding in the route table, each transcoding to
//! its RPC, plus `/api/openapi.json`. Anything else answers the error shape with 404 (405 for a
//! known path with another method), whatever its content type, a gRPC request included.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use pillivery_platform::auth::{self, Caller, Role, TokenVerifier};
use pillivery_platform::client::{CallOptions, Upstream};
use pillivery_platform::error::{ApiError, Locale, Text};
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::telemetry;
use pillivery_proto::api::AuthPolicy;
use prost_reflect::DynamicMessage;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::codec::DynamicCodec;
use crate::errors::HttpError;
use crate::routes::{BodyBinding, Route, Segment, Verb};
use crate::transcode::{self, Violations};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// What every route handler shares.
pub struct Gateway {
    pub upstreams: HashMap<String, Upstream>,
    pub default_deadline: Duration,
    pub max_body_bytes: u64,
    pub trust_forwarded_for: bool,
    pub openapi: Bytes,
    pub verifier: TokenVerifier,
    /// Where logged-out tokens are blacklisted (shared with the user service).
    pub key_value: KeyValueStore,
}

/// The request id of this request (taken from the client or generated), set by middleware.
#[derive(Clone)]
struct RequestId(String);

/// Builds the public router.
pub fn router(gateway: Arc<Gateway>, routes: Vec<Route>, cors_origins: &[String]) -> axum::Router {
    let mut by_path: BTreeMap<String, MethodRouter> = BTreeMap::new();
    for route in routes {
        let route = Arc::new(route);
        let filter = match route.verb {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        };
        let handler = {
            let gateway = gateway.clone();
            let route = route.clone();
            move |request: Request| {
                let gateway = gateway.clone();
                let route = route.clone();
                async move { transcode_call(&gateway, &route, request).await }
            }
        };
        let path = route.axum_path();
        let method_router = by_path.remove(&path).unwrap_or_default();
        by_path.insert(path, method_router.on(filter, handler));
    }
    let openapi = gateway.openapi.clone();
    by_path.insert(
        "/api/openapi.json".into(),
        MethodRouter::new().on(MethodFilter::GET, move || {
            let openapi = openapi.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                    openapi,
                )
            }
        }),
    );
    let mut app = axum::Router::new();
    for (path, method_router) in by_path {
        app = app.route(&path, method_router.fallback(method_not_allowed));
    }
    let mut app = app
        .fallback(route_not_found)
        // A bug must cost one request a 500 in the error shape, never the connection.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(observe))
        .layer(CompressionLayer::new().gzip(true));
    if !cors_origins.is_empty() {
        app = app.layer(cors_layer(cors_origins));
    }
    app
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    HttpError::from_api_error(
        ApiError::internal(&format!("handler panicked: {detail}")),
        Locale::default(),
    )
    .into_response("")
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT_LANGUAGE,
            IDEMPOTENCY_KEY,
            REQUEST_ID,
            HeaderName::from_static("traceparent"),
        ])
        .expose_headers([REQUEST_ID, HeaderName::from_static("refresh")])
        .max_age(Duration::from_secs(600))
}

/// Request id, trace context, access metrics and a span around every request.
async fn observe(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http.request",
        http.method = %method,
        http.route = %route,
        request_id = %request_id,
        http.status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    telemetry::continue_trace(&span, &telemetry::HeaderCarrier(request.headers()));
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.status", status);
    metrics::counter!(
        "pillivery_http_requests_total",
        "route" => route.clone(),
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("pillivery_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

fn request_id_of(request: &Request) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}

fn locale_of(headers: &HeaderMap) -> Locale {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .map(Locale::from_accept_language)
        .unwrap_or_default()
}

async fn route_not_found(request: Request) -> Response {
    let locale = locale_of(request.headers());
    HttpError::route_not_found(locale).into_response(&request_id_of(&request))
}

async fn method_not_allowed(request: Request) -> Response {
    let locale = locale_of(request.headers());
    HttpError::own(
        Code::InvalidArgument,
        "METHOD_NOT_ALLOWED",
        Text::new(
            "허용되지 않는 메서드입니다.",
            "This method is not allowed here.",
        ),
        locale,
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response(&request_id_of(&request))
}

/// REST request → RPC → REST response.
async fn transcode_call(gateway: &Gateway, route: &Route, request: Request) -> Response {
    let request_id = request_id_of(&request);
    let locale = locale_of(request.headers());
    match call(gateway, route, request, &request_id, locale).await {
        Ok(response) => response,
        Err(error) => error.into_response(&request_id),
    }
}

async fn call(
    gateway: &Gateway,
    route: &Route,
    request: Request,
    request_id: &str,
    locale: Locale,
) -> Result<Response, HttpError> {
    let (mut parts, body) = request.into_parts();

    // Who may call. Public routes pass the token on unchecked (a service may use it); the others
    // need a valid, unrevoked token, and ADMIN routes an administrator's.
    let caller = if route.auth == AuthPolicy::Public {
        None
    } else {
        Some(authenticate(gateway, &parts.headers, route.auth, locale).await?)
    };
    if route.idempotency_key_required
        && parts
            .headers
            .get(&IDEMPOTENCY_KEY)
            .and_then(|value| value.to_str().ok())
            .is_none_or(|value| value.trim().is_empty() || value.len() > 200)
    {
        return Err(HttpError::from_api_error(
            ApiError::validation(vec![pillivery_platform::error::FieldViolation::new(
                "Idempotency-Key",
                serde_json::Value::Null,
                Text::new(
                    "Idempotency-Key 헤더가 필요합니다 (1~200자).",
                    "the Idempotency-Key header is required (1 to 200 characters)",
                ),
            )]),
            locale,
        ));
    }

    // The request message: path, then query, then body.
    let mut message = DynamicMessage::new(route.method.input());
    let mut violations = Violations::default();
    let raw_params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| {
            HttpError::from_api_error(
                ApiError::validation(vec![pillivery_platform::error::FieldViolation::new(
                    "path",
                    serde_json::Value::String(parts.uri.path().to_owned()),
                    Text::new(
                        "경로의 값이 올바른 UTF-8이 아닙니다.",
                        "a path value is not valid UTF-8",
                    ),
                )]),
                locale,
            )
        })?;
    let values: Vec<String> = raw_params
        .iter()
        .map(|(_, value)| value.to_owned())
        .collect();
    for (field_path, text) in route.path_variables().into_iter().zip(values.iter()) {
        transcode::set_from_path(&mut message, field_path, text, &mut violations);
    }
    for segment in &route.segments {
        if let Segment::FixedVariable { field_path, value } = segment {
            transcode::set_from_path(&mut message, field_path, value, &mut violations);
        }
    }
    let path_fields = route.path_bound_fields();
    let query = parts.uri.query().unwrap_or_default();
    match &route.body {
        // With `body: "*"` every field comes from the body; a query string is ignored.
        BodyBinding::Whole => {}
        BodyBinding::None => {
            transcode::query_into_message(&mut message, query, &path_fields, &mut violations)
        }
        BodyBinding::Field(field) => {
            let mut skip = path_fields.clone();
            skip.push(field.name().to_owned());
            transcode::query_into_message(&mut message, query, &skip, &mut violations)
        }
    }
    let limit = route
        .max_body_bytes
        .map(u64::from)
        .unwrap_or(gateway.max_body_bytes);
    let body = read_body(body, &parts.headers, limit, locale).await?;
    match &route.body {
        BodyBinding::None => {
            // Routes without a body accept an empty body or `{}`.
            if !body.is_empty() {
                let json = parse_json(&body, locale)?;
                if json != serde_json::json!({}) {
                    return Err(HttpError::own(
                        Code::InvalidArgument,
                        "UNEXPECTED_BODY",
                        Text::new(
                            "이 요청은 본문을 받지 않습니다.",
                            "This route takes no request body.",
                        ),
                        locale,
                    ));
                }
            }
        }
        BodyBinding::Whole => {
            let json = if body.is_empty() {
                serde_json::json!({})
            } else {
                parse_json(&body, locale)?
            };
            transcode::json_into_message(&mut message, &json, "", &path_fields, &mut violations);
        }
        BodyBinding::Field(field) => {
            let json = if body.is_empty() {
                serde_json::Value::Null
            } else {
                parse_json(&body, locale)?
            };
            set_body_field(&mut message, field, &json, &mut violations);
        }
    }
    // What the gateway could not parse is left unset. A read-only RPC is still asked, so its own
    // rule violations are reported in the same answer (SPEC: all violations at once); anything
    // that might change state is never called with a request known to be invalid.
    let gateway_violations = violations.0;
    if !gateway_violations.is_empty() && !route.read_only {
        return Err(HttpError::from_api_error(
            ApiError::validation(gateway_violations),
            locale,
        ));
    }

    // The call.
    let upstream = gateway.upstreams.get(&route.upstream).ok_or_else(|| {
        tracing::error!(upstream = %route.upstream, "route names an unknown upstream");
        HttpError::from_api_error(ApiError::internal(&"unknown upstream"), locale)
    })?;
    let client_ip = client_ip(&parts, gateway.trust_forwarded_for);
    let deadline = route
        .deadline_ms
        .map(|ms| Duration::from_millis(u64::from(ms)))
        .unwrap_or(gateway.default_deadline);
    let grpc_path: http::uri::PathAndQuery = route
        .grpc_path()
        .parse()
        .map_err(|_| HttpError::from_api_error(ApiError::internal(&"bad gRPC path"), locale))?;
    let output = route.method.output();
    let span = tracing::Span::current();
    let headers = parts.headers.clone();
    let answer = upstream
        .call(
            CallOptions {
                deadline,
                retryable: route.retryable,
            },
            |channel, remaining| {
                let mut grpc_request = tonic::Request::new(message.clone());
                grpc_request.set_timeout(remaining);
                forward_metadata(
                    &mut grpc_request,
                    &headers,
                    request_id,
                    client_ip.as_deref(),
                );
                if let Some(caller) = &caller {
                    forward_caller(&mut grpc_request, caller);
                }
                telemetry::inject_trace(
                    &span,
                    &mut telemetry::MetadataCarrier(grpc_request.metadata_mut()),
                );
                let codec = DynamicCodec::new(output.clone());
                let path = grpc_path.clone();
                async move {
                    let mut grpc = tonic::client::Grpc::new(channel);
                    grpc.ready()
                        .await
                        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
                    grpc.unary(grpc_request, path, codec).await
                }
            },
        )
        .await;
    let validation = |mut service_errors: Vec<_>| {
        let mut all =
            HttpError::from_api_error(ApiError::validation(gateway_violations.clone()), locale);
        all.field_errors.append(&mut service_errors);
        all
    };
    let response = match answer {
        Ok(_) if !gateway_violations.is_empty() => return Err(validation(Vec::new())),
        Ok(response) => response.into_inner(),
        Err(error) => {
            let error = match error.into_api_error() {
                Ok(api_error) => HttpError::from_api_error(api_error, locale),
                Err(status) => HttpError::from_status(&status, locale),
            };
            if gateway_violations.is_empty() {
                return Err(error);
            }
            // The request was invalid anyway: merge the service's violations, or report only
            // ours when the service failed for another reason.
            return Err(if error.code == Code::InvalidArgument {
                validation(error.field_errors)
            } else {
                validation(Vec::new())
            });
        }
    };
    success_response(route, &response, accepts_json(&parts.headers), locale)
}

/// Whether the client asked for JSON (`Accept: application/json`, with a quality above 0): a
/// redirect route then answers its message as JSON instead of a 302 (SPEC section 6), so a
/// storefront driving the PG redirects itself can read the outcome.
fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|parameter| {
                parameter
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/json") && !refused
        })
}

/// The REST answer for a successful call: a redirect, no content, or JSON, plus any headers the
/// route copies from the answer.
fn success_response(
    route: &Route,
    response: &DynamicMessage,
    wants_json: bool,
    locale: Locale,
) -> Result<Response, HttpError> {
    let text_of = |field: &prost_reflect::FieldDescriptor| match response.get_field(field).as_ref()
    {
        prost_reflect::Value::String(text) => text.clone(),
        _ => String::new(),
    };
    let broken_answer = || {
        HttpError::from_api_error(
            ApiError::internal(&format!(
                "{}: answer unusable as a header",
                route.method.full_name()
            )),
            locale,
        )
    };
    let redirect = route.redirect_field.as_ref().filter(|_| !wants_json);
    let mut response_out = if let Some(field) = redirect {
        let location = HeaderValue::from_str(&text_of(field)).map_err(|_| broken_answer())?;
        let mut redirect = StatusCode::FOUND.into_response();
        redirect.headers_mut().insert(header::LOCATION, location);
        redirect
    } else {
        let status = StatusCode::from_u16(route.success_status).unwrap_or(StatusCode::OK);
        if status == StatusCode::NO_CONTENT {
            status.into_response()
        } else {
            (
                status,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                transcode::message_to_json(response).to_string(),
            )
                .into_response()
        }
    };
    for copied in &route.response_headers {
        let value = text_of(&copied.field);
        if value.is_empty() {
            continue;
        }
        let value = HeaderValue::from_str(&format!("{}{value}", copied.prefix))
            .map_err(|_| broken_answer())?;
        response_out
            .headers_mut()
            .insert(copied.name.clone(), value);
    }
    Ok(response_out)
}

/// The verified caller of a USER or ADMIN route.
async fn authenticate(
    gateway: &Gateway,
    headers: &HeaderMap,
    policy: AuthPolicy,
    locale: Locale,
) -> Result<Caller, HttpError> {
    let refuse =
        |reason: &'static str| HttpError::from_api_error(auth::unauthenticated(reason), locale);
    let token =
        auth::bearer_from_headers(headers).ok_or_else(|| refuse("AUTHENTICATION_REQUIRED"))?;
    let caller = gateway
        .verifier
        .verify(token, chrono::Utc::now())
        .map_err(|error| refuse(error.reason()))?;
    // Logged out (the token's jti) or withdrawn (every token of the user): refused at once, not
    // only when the token expires. If the store
    // cannot answer, refuse rather than let a possibly revoked token through.
    for key in [
        auth::blacklist_key(&caller.token_id),
        auth::withdrawn_key(caller.user_id),
    ] {
        match gateway.key_value.get(&key).await {
            Ok(None) => {}
            Ok(Some(_)) => return Err(refuse("TOKEN_REVOKED")),
            Err(error) => {
                return Err(HttpError::from_api_error(
                    ApiError::unavailable(&error),
                    locale,
                ));
            }
        }
    }
    if policy == AuthPolicy::Admin && caller.role != Role::Admin {
        return Err(HttpError::own(
            Code::PermissionDenied,
            "FORBIDDEN",
            Text::new("권한이 없습니다.", "Administrators only."),
            locale,
        ));
    }
    Ok(caller)
}

/// The verified identity, for logs and routing downstream; services still verify the token
/// themselves and trust only it.
fn forward_caller(request: &mut tonic::Request<DynamicMessage>, caller: &Caller) {
    let metadata = request.metadata_mut();
    if let Ok(value) = MetadataValue::try_from(caller.user_id.to_string()) {
        metadata.insert("x-caller-id", value);
    }
    metadata.insert(
        "x-caller-role",
        MetadataValue::from_static(caller.role.as_str()),
    );
}

fn set_body_field(
    message: &mut DynamicMessage,
    field: &prost_reflect::FieldDescriptor,
    json: &serde_json::Value,
    violations: &mut Violations,
) {
    // The client sent the field's value itself, so violation paths start inside it.
    let wrapper = serde_json::json!({ field.json_name(): json });
    let mut scratch = Violations::default();
    transcode::json_into_message(message, &wrapper, "", &[], &mut scratch);
    let prefix = field.json_name();
    for mut violation in scratch.0 {
        if let Some(rest) = violation.field.strip_prefix(prefix) {
            violation.field = rest.strip_prefix('.').unwrap_or(rest).to_owned();
            if violation.field.is_empty() {
                violation.field = "body".into();
            }
        }
        violations.0.push(violation);
    }
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: u64,
    locale: Locale,
) -> Result<Bytes, HttpError> {
    let too_large = || {
        HttpError::own(
            Code::InvalidArgument,
            "PAYLOAD_TOO_LARGE",
            Text::new("요청 본문이 너무 큽니다.", "The request body is too large."),
            locale,
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(HttpError::own(
            Code::InvalidArgument,
            "MALFORMED_REQUEST",
            Text::new(
                "요청 본문을 읽을 수 없습니다.",
                "The request body could not be read.",
            ),
            locale,
        )),
    }
}

fn parse_json(body: &[u8], locale: Locale) -> Result<serde_json::Value, HttpError> {
    serde_json::from_slice(body).map_err(|_| {
        HttpError::own(
            Code::InvalidArgument,
            "MALFORMED_JSON",
            Text::new(
                "JSON 형식이 올바르지 않습니다.",
                "The body is not valid JSON.",
            ),
            locale,
        )
    })
}

fn client_ip(parts: &http::request::Parts, trust_forwarded_for: bool) -> Option<String> {
    if trust_forwarded_for
        && let Some(first) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    {
        return Some(first.to_owned());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
}

/// What services learn about the caller: the request id, the language, the client address and
/// the bearer token (services verify it again themselves).
fn forward_metadata(
    request: &mut tonic::Request<DynamicMessage>,
    headers: &HeaderMap,
    request_id: &str,
    client_ip: Option<&str>,
) {
    let metadata = request.metadata_mut();
    if let Ok(value) = MetadataValue::try_from(request_id) {
        metadata.insert("x-request-id", value);
    }
    if let Some(ip) = client_ip
        && let Ok(value) = MetadataValue::try_from(ip)
    {
        metadata.insert("x-client-ip", value);
    }
    for name in [header::ACCEPT_LANGUAGE, header::AUTHORIZATION] {
        if let Some(value) = headers.get(&name).and_then(|value| value.to_str().ok())
            && let Ok(value) = MetadataValue::try_from(value)
            && let Ok(key) = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
        {
            metadata.insert(key, value);
        }
    }
    if let Some(key) = headers
        .get(&IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| MetadataValue::try_from(value).ok())
    {
        metadata.insert("idempotency-key", key);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn approve_route() -> Route {
        let services = HashMap::from([(
            "pillivery.payment.v1.PaymentService".to_owned(),
            "payment".to_owned(),
        )]);
        crate::routes::build_routes(pillivery_proto::descriptor_pool(), &services)
            .unwrap()
            .into_iter()
            .find(|route| route.method.name() == "ApprovePayment")
            .unwrap()
    }

    fn headers(accept: &str) -> HeaderMap {
        HeaderMap::from_iter([(header::ACCEPT, HeaderValue::from_str(accept).unwrap())])
    }

    #[test]
    fn json_is_wanted_only_when_accepted() {
        let cases = [
            ("application/json", true),
            ("text/html, application/json;q=0.9", true),
            ("Application/JSON", true),
            ("application/json;q=0", false),
            ("text/html,application/xhtml+xml,*/*;q=0.8", false),
            ("*/*", false),
        ];
        for (accept, expected) in cases {
            assert_eq!(accepts_json(&headers(accept)), expected, "{accept}");
        }
        assert!(!accepts_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn redirect_routes_answer_json_when_asked() {
        let route = approve_route();
        let mut answer = DynamicMessage::new(route.method.output());
        answer.set_field_by_name(
            "redirect_url",
            prost_reflect::Value::String("https://store.test/paid?orderId=7".into()),
        );
        let redirect = success_response(&route, &answer, false, Locale::Korean).unwrap();
        assert_eq!(redirect.status(), StatusCode::FOUND);
        assert_eq!(
            redirect.headers()[header::LOCATION],
            "https://store.test/paid?orderId=7"
        );
        let json = success_response(&route, &answer, true, Locale::Korean).unwrap();
        assert_eq!(json.status(), StatusCode::OK);
        assert!(json.headers().get(header::LOCATION).is_none());
        let body = json.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["redirectUrl"], "https://store.test/paid?orderId=7");
        assert!(body.get("payment").is_some(), "{body}");
    }
}

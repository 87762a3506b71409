//! The one error body of the REST surface, and the gRPC code → HTTP status table (SPEC §2).
//!
//! `{"status", "code", "message", "fieldErrors"?, "requestId"}`: `code` is the stable reason a
//! service put in `google.rpc.ErrorInfo` (or the gateway's own), `message` is in the request's
//! language, `fieldErrors` appears only for validation failures. A status without our details
//! (a crashed or foreign server) is reduced to a generic error for its code; its text is logged,
//! never sent.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use pillivery_platform::error::{ApiError, DecodedFieldError, Locale, Text};
use serde_json::json;
use tonic::Code;

/// The most field errors one answer lists.
pub const MAX_FIELD_ERRORS: usize = 100;

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error ready to be written as the REST error body.
#[derive(Debug)]
pub struct HttpError {
    pub code: Code,
    /// Normally [`http_status`] of `code`; a few edge errors (405, 413) have no code of their own.
    pub status: StatusCode,
    pub reason: String,
    pub message: String,
    pub field_errors: Vec<DecodedFieldError>,
}

impl HttpError {
    pub fn from_api_error(error: ApiError, locale: Locale) -> HttpError {
        HttpError {
            code: error.code,
            status: http_status(error.code),
            reason: error.reason.into_owned(),
            message: error.message.in_locale(locale).to_owned(),
            field_errors: error
                .field_violations
                .into_iter()
                .map(|violation| DecodedFieldError {
                    field: violation.field,
                    rejected_value: violation.rejected_value,
                    reason: violation.reason.in_locale(locale).to_owned(),
                })
                .collect(),
        }
    }

    /// What a downstream answered, as the client must see it.
    pub fn from_status(status: &tonic::Status, locale: Locale) -> HttpError {
        if let Some(decoded) = ApiError::from_status(status) {
            return HttpError {
                code: decoded.code,
                status: http_status(decoded.code),
                reason: decoded.reason,
                message: decoded.message,
                field_errors: decoded.field_errors,
            };
        }
        tracing::warn!(code = ?status.code(), message = status.message(), "upstream error without details");
        let (reason, text) = generic(status.code());
        HttpError {
            code: status.code(),
            status: http_status(status.code()),
            reason: reason.to_owned(),
            message: text.in_locale(locale).to_owned(),
            field_errors: Vec::new(),
        }
    }

    pub fn own(code: Code, reason: &'static str, text: Text, locale: Locale) -> HttpError {
        HttpError::from_api_error(ApiError::new(code, reason, text), locale)
    }

    pub fn route_not_found(locale: Locale) -> HttpError {
        HttpError::own(
            Code::NotFound,
            "ROUTE_NOT_FOUND",
            Text::new("요청한 경로를 찾을 수 없습니다.", "No such route."),
            locale,
        )
    }

    pub fn with_status(mut self, status: StatusCode) -> HttpError {
        self.status = status;
        self
    }

    pub fn into_response(self, request_id: &str) -> Response {
        let status = self.status;
        let mut body = json!({
            "status": status.as_u16(),
            "code": self.reason,
            "message": self.message,
        });
        if !self.field_errors.is_empty() {
            // Bounded, so a request with thousands of bad parameters cannot amplify itself.
            body["fieldErrors"] = self
                .field_errors
                .into_iter()
                .take(MAX_FIELD_ERRORS)
                .map(|error| {
                    json!({
                        "field": error.field,
                        "rejectedValue": error.rejected_value,
                        "reason": error.reason,
                    })
                })
                .collect();
        }
        body["requestId"] = json!(request_id);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body.to_string(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn generic(code: Code) -> (&'static str, Text) {
    match code {
        Code::InvalidArgument | Code::OutOfRange => (
            "INVALID_ARGUMENT",
            Text::new("요청이 올바르지 않습니다.", "The request is invalid."),
        ),
        Code::NotFound => ("NOT_FOUND", Text::new("찾을 수 없습니다.", "Not found.")),
        Code::AlreadyExists | Code::Aborted => (
            "CONFLICT",
            Text::new(
                "요청이 현재 상태와 충돌합니다.",
                "The request conflicts with the current state.",
            ),
        ),
        Code::Unauthenticated => (
            "UNAUTHENTICATED",
            Text::new("로그인이 필요합니다.", "Authentication is required."),
        ),
        Code::PermissionDenied => (
            "FORBIDDEN",
            Text::new("권한이 없습니다.", "You may not do this."),
        ),
        Code::FailedPrecondition => (
            "FAILED_PRECONDITION",
            Text::new(
                "지금은 처리할 수 없는 요청입니다.",
                "The request cannot be processed in the current state.",
            ),
        ),
        Code::ResourceExhausted => (
            "TOO_MANY_REQUESTS",
            Text::new(
                "요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
                "Too many requests. Please try again shortly.",
            ),
        ),
        Code::Cancelled => (
            "CANCELLED",
            Text::new("요청이 취소되었습니다.", "The request was cancelled."),
        ),
        Code::Unimplemented => (
            "NOT_IMPLEMENTED",
            Text::new("지원하지 않는 기능입니다.", "This is not supported."),
        ),
        Code::Unavailable => (
            "UPSTREAM_UNAVAILABLE",
            Text::new(
                "서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도해 주세요.",
                "The service is temporarily unavailable. Please try again shortly.",
            ),
        ),
        Code::DeadlineExceeded => (
            "UPSTREAM_TIMEOUT",
            Text::new(
                "응답 시간이 초과되었습니다. 잠시 후 다시 시도해 주세요.",
                "The service took too long to answer. Please try again shortly.",
            ),
        ),
        Code::Ok | Code::Internal | Code::Unknown | Code::DataLoss => (
            "INTERNAL",
            Text::new(
                "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.",
                "Something went wrong on our side. Please try again shortly.",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_follows_the_spec() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::FailedPrecondition, 422),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Internal, 500),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, status) in table {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn foreign_errors_never_leak_their_text() {
        let error = HttpError::from_status(
            &tonic::Status::internal("panicked at src/secret.rs:12"),
            Locale::English,
        );
        assert_eq!(error.reason, "INTERNAL");
        assert!(!error.message.contains("secret"));
    }
}

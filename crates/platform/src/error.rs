//! Errors that cross a service boundary.
//!
//! A service turns its own error enum into an [`ApiError`] (gRPC code + stable `reason` + a
//! message in the caller's language + field violations) in exactly one place, and
//! [`ApiError::into_status`] encodes it as a `tonic::Status` whose `grpc-status-details-bin`
//! holds a `google.rpc.Status` with `google.rpc.ErrorInfo`, `google.rpc.LocalizedMessage` and
//! `pillivery.api.v1.ValidationErrors`. The gateway decodes it with [`ApiError::from_status`] and
//! renders the SPEC's error body. Internal causes never travel: they are logged where they happen.

use std::borrow::Cow;

use pillivery_proto::api::{FieldError, ValidationErrors};
use pillivery_proto::google::rpc;
use prost::Message;
use tonic::Code;
use tonic::metadata::MetadataMap;

/// The domain every `ErrorInfo.reason` of ours belongs to.
pub const ERROR_DOMAIN: &str = "pillivery.shop";

/// The language an answer is written in, from the gateway's `Accept-Language`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Locale {
    #[default]
    Korean,
    English,
}

impl Locale {
    /// Reads an `Accept-Language` value: English when its first language is English, else Korean.
    pub fn from_accept_language(value: &str) -> Locale {
        let first = value
            .split(',')
            .next()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if first == "en" || first.starts_with("en-") {
            Locale::English
        } else {
            Locale::Korean
        }
    }

    /// The locale a service should answer in, from the metadata the gateway forwards.
    pub fn from_metadata(metadata: &MetadataMap) -> Locale {
        metadata
            .get("accept-language")
            .and_then(|value| value.to_str().ok())
            .map(Locale::from_accept_language)
            .unwrap_or_default()
    }

    pub fn tag(self) -> &'static str {
        match self {
            Locale::Korean => "ko",
            Locale::English => "en",
        }
    }
}

/// A text in both languages of the shop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub ko: Cow<'static, str>,
    pub en: Cow<'static, str>,
}

impl Text {
    pub const fn new(ko: &'static str, en: &'static str) -> Text {
        Text {
            ko: Cow::Borrowed(ko),
            en: Cow::Borrowed(en),
        }
    }

    pub fn owned(ko: String, en: String) -> Text {
        Text {
            ko: Cow::Owned(ko),
            en: Cow::Owned(en),
        }
    }

    pub fn in_locale(&self, locale: Locale) -> &str {
        match locale {
            Locale::Korean => &self.ko,
            Locale::English => &self.en,
        }
    }
}

/// One invalid input: where, what was sent, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldViolation {
    /// JSON lowerCamelCase path as the client sent it, or a query parameter's name.
    pub field: String,
    pub rejected_value: serde_json::Value,
    pub reason: Text,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, rejected_value: serde_json::Value, reason: Text) -> Self {
        Self {
            field: field.into(),
            rejected_value,
            reason,
        }
    }
}

/// An error as every client sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: Code,
    /// Stable, machine-readable: `ITEM_NOT_FOUND`, `VALIDATION_FAILED`, ...
    pub reason: Cow<'static, str>,
    pub message: Text,
    pub field_violations: Vec<FieldViolation>,
}

/// The same error after a trip through gRPC: already in one language.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedError {
    pub code: Code,
    pub reason: String,
    pub message: String,
    pub field_errors: Vec<DecodedFieldError>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DecodedFieldError {
    pub field: String,
    pub rejected_value: serde_json::Value,
    pub reason: String,
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: Text) -> ApiError {
        ApiError {
            code,
            reason: Cow::Borrowed(reason),
            message,
            field_violations: Vec::new(),
        }
    }

    /// A 400 listing every violation at once.
    pub fn validation(field_violations: Vec<FieldViolation>) -> ApiError {
        ApiError {
            code: Code::InvalidArgument,
            reason: Cow::Borrowed("VALIDATION_FAILED"),
            message: Text::new(
                "입력값이 올바르지 않습니다.",
                "The request has invalid values.",
            ),
            field_violations,
        }
    }

    /// An unexpected failure: the cause is logged here and a generic error is returned.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            Code::Internal,
            "INTERNAL",
            Text::new(
                "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.",
                "Something went wrong on our side. Please try again shortly.",
            ),
        )
    }

    /// A dependency (database, store) is down or too slow: an honest, retryable 503.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "dependency unavailable");
        ApiError::new(
            Code::Unavailable,
            "SERVICE_UNAVAILABLE",
            Text::new(
                "서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도해 주세요.",
                "The service is temporarily unavailable. Please try again shortly.",
            ),
        )
    }

    /// Encodes the error for the wire in the caller's language.
    pub fn into_status(self, locale: Locale) -> tonic::Status {
        let message = self.message.in_locale(locale).to_owned();
        let mut details = vec![
            any(
                "google.rpc.ErrorInfo",
                &rpc::ErrorInfo {
                    reason: self.reason.clone().into_owned(),
                    domain: ERROR_DOMAIN.into(),
                    metadata: Default::default(),
                },
            ),
            any(
                "google.rpc.LocalizedMessage",
                &rpc::LocalizedMessage {
                    locale: locale.tag().into(),
                    message: message.clone(),
                },
            ),
        ];
        if !self.field_violations.is_empty() {
            let field_errors = self
                .field_violations
                .iter()
                .map(|violation| FieldError {
                    field: violation.field.clone(),
                    rejected_value: Some(json_to_value(&violation.rejected_value)),
                    reason: violation.reason.in_locale(locale).to_owned(),
                })
                .collect();
            details.push(any(
                "pillivery.api.v1.ValidationErrors",
                &ValidationErrors { field_errors },
            ));
        }
        let status = rpc::Status {
            code: self.code as i32,
            message: message.clone(),
            details,
        };
        tonic::Status::with_details(self.code, message, status.encode_to_vec().into())
    }

    /// Reads what [`ApiError::into_status`] wrote. A status without our details (a transport
    /// failure, another server) yields `None`.
    pub fn from_status(status: &tonic::Status) -> Option<DecodedError> {
        let encoded = status.details();
        if encoded.is_empty() {
            return None;
        }
        let decoded = rpc::Status::decode(encoded).ok()?;
        let mut reason = None;
        let mut message = status.message().to_owned();
        let mut field_errors = Vec::new();
        for detail in decoded.details {
            match detail.type_url.rsplit('/').next().unwrap_or_default() {
                "google.rpc.ErrorInfo" => {
                    if let Ok(info) = rpc::ErrorInfo::decode(detail.value.as_slice()) {
                        reason = Some(info.reason);
                    }
                }
                "google.rpc.LocalizedMessage" => {
                    if let Ok(localized) = rpc::LocalizedMessage::decode(detail.value.as_slice()) {
                        message = localized.message;
                    }
                }
                "pillivery.api.v1.ValidationErrors" => {
                    if let Ok(errors) = ValidationErrors::decode(detail.value.as_slice()) {
                        field_errors = errors
                            .field_errors
                            .into_iter()
                            .map(|error| DecodedFieldError {
                                field: error.field,
                                rejected_value: error
                                    .rejected_value
                                    .map(|value| value_to_json(&value))
                                    .unwrap_or(serde_json::Value::Null),
                                reason: error.reason,
                            })
                            .collect();
                    }
                }
                _ => {}
            }
        }
        Some(DecodedError {
            code: status.code(),
            reason: reason?,
            message,
            field_errors,
        })
    }
}

fn any(type_name: &str, message: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

/// `serde_json::Value` → `google.protobuf.Value`.
pub fn json_to_value(json: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(*flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(text) => Kind::StringValue(text.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(name, value)| (name.clone(), json_to_value(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// `google.protobuf.Value` → `serde_json::Value`. Whole numbers come back as integers.
pub fn value_to_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Kind::NumberValue(number)) => {
            if number.fract() == 0.0 && number.abs() < 9.0e15 {
                serde_json::Value::from(*number as i64)
            } else {
                serde_json::Number::from_f64(*number)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(fields)) => serde_json::Value::Object(
            fields
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), value_to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_survives_the_wire_in_the_callers_language() {
        let error = ApiError::validation(vec![FieldViolation::new(
            "size",
            serde_json::json!(0),
            Text::new("1 이상 100 이하여야 합니다.", "must be between 1 and 100"),
        )]);
        let decoded = ApiError::from_status(&error.clone().into_status(Locale::English))
            .expect("our details decode");
        assert_eq!(decoded.code, Code::InvalidArgument);
        assert_eq!(decoded.reason, "VALIDATION_FAILED");
        assert_eq!(decoded.message, "The request has invalid values.");
        assert_eq!(
            decoded.field_errors,
            vec![DecodedFieldError {
                field: "size".into(),
                rejected_value: serde_json::json!(0),
                reason: "must be between 1 and 100".into(),
            }]
        );
        let korean = ApiError::from_status(&error.into_status(Locale::Korean)).unwrap();
        assert_eq!(korean.message, "입력값이 올바르지 않습니다.");
    }

    #[test]
    fn a_bare_status_is_not_mistaken_for_ours() {
        assert_eq!(
            ApiError::from_status(&tonic::Status::unavailable("down")),
            None
        );
    }

    #[test]
    fn accept_language_picks_english_only_when_first() {
        assert_eq!(
            Locale::from_accept_language("en-US,en;q=0.9"),
            Locale::English
        );
        assert_eq!(
            Locale::from_accept_language("ko-KR,en;q=0.5"),
            Locale::Korean
        );
        assert_eq!(Locale::from_accept_language(""), Locale::Korean);
        assert_eq!(Locale::from_accept_language("EN"), Locale::English);
    }
}

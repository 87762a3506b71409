//! Everything the user service can answer besides success, mapped to the client-facing error in
//! this one place.

use pillivery_platform::error::{ApiError, FieldViolation, Text};
use pillivery_platform::kv::KvError;
use tonic::Code;

use crate::password::HashError;
use crate::store::{StoreError, UniqueField};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("{0:?} is taken")]
    Taken(UniqueField),
    /// Unknown e-mail, wrong password or withdrawn account: one answer for all three.
    #[error("bad credentials")]
    BadCredentials,
    #[error("too many login attempts")]
    TooManyLoginAttempts,
    #[error("unknown, expired or revoked refresh token")]
    InvalidRefreshToken,
    #[error("a spent refresh token was presented again; its family is revoked")]
    RefreshTokenReused,
    /// No usable access token: `reason` is `AUTHENTICATION_REQUIRED`, `INVALID_TOKEN` or
    /// `TOKEN_EXPIRED` (a blacklisted token or a withdrawn account's is `INVALID_TOKEN`).
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("an administrator's route")]
    Forbidden,
    #[error("user {0} does not exist")]
    UserNotFound(i64),
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error(transparent)]
    KeyValue(#[from] KvError),
}

impl From<Vec<FieldViolation>> for UserError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        UserError::Invalid(violations)
    }
}

impl UserError {
    /// The stable reason code clients see.
    pub fn reason(&self) -> &'static str {
        match self {
            UserError::Invalid(_) => "VALIDATION_FAILED",
            UserError::Taken(UniqueField::Email) => "EMAIL_TAKEN",
            UserError::Taken(UniqueField::DisplayName) => "DISPLAY_NAME_TAKEN",
            UserError::Taken(UniqueField::Phone) => "PHONE_TAKEN",
            UserError::BadCredentials => "BAD_CREDENTIALS",
            UserError::TooManyLoginAttempts => "TOO_MANY_LOGIN_ATTEMPTS",
            UserError::InvalidRefreshToken => "INVALID_REFRESH_TOKEN",
            UserError::RefreshTokenReused => "REFRESH_TOKEN_REUSED",
            UserError::Unauthenticated(reason) => reason,
            UserError::Forbidden => "FORBIDDEN",
            UserError::UserNotFound(_) => "USER_NOT_FOUND",
            UserError::Storage(error) if error.is_unavailable() => "SERVICE_UNAVAILABLE",
            UserError::KeyValue(_) => "SERVICE_UNAVAILABLE",
            UserError::Storage(_) | UserError::Hashing(_) => "INTERNAL",
        }
    }

    pub fn into_api_error(self) -> ApiError {
        match self {
            UserError::Invalid(violations) => ApiError::validation(violations),
            UserError::Taken(field) => {
                let (reason, message) = match field {
                    UniqueField::Email => (
                        "EMAIL_TAKEN",
                        Text::new(
                            "이미 사용 중인 이메일입니다.",
                            "This e-mail is already in use.",
                        ),
                    ),
                    UniqueField::DisplayName => (
                        "DISPLAY_NAME_TAKEN",
                        Text::new(
                            "이미 사용 중인 닉네임입니다.",
                            "This display name is already in use.",
                        ),
                    ),
                    UniqueField::Phone => (
                        "PHONE_TAKEN",
                        Text::new(
                            "이미 사용 중인 휴대폰 번호입니다.",
                            "This phone number is already in use.",
                        ),
                    ),
                };
                ApiError::new(Code::AlreadyExists, reason, message)
            }
            UserError::BadCredentials => ApiError::new(
                Code::Unauthenticated,
                "BAD_CREDENTIALS",
                Text::new(
                    "이메일 또는 비밀번호가 올바르지 않습니다.",
                    "The e-mail or password is not correct.",
                ),
            ),
            UserError::TooManyLoginAttempts => ApiError::new(
                Code::ResourceExhausted,
                "TOO_MANY_LOGIN_ATTEMPTS",
                Text::new(
                    "로그인 시도가 너무 많습니다. 잠시 후 다시 시도해 주세요.",
                    "Too many login attempts. Please try again in a minute.",
                ),
            ),
            UserError::InvalidRefreshToken => ApiError::new(
                Code::Unauthenticated,
                "INVALID_REFRESH_TOKEN",
                Text::new(
                    "유효하지 않은 리프레시 토큰입니다. 다시 로그인해 주세요.",
                    "The refresh token is not valid. Please log in again.",
                ),
            ),
            UserError::RefreshTokenReused => ApiError::new(
                Code::Unauthenticated,
                "REFRESH_TOKEN_REUSED",
                Text::new(
                    "이미 사용된 리프레시 토큰입니다. 보안을 위해 다시 로그인해 주세요.",
                    "This refresh token was already used. Please log in again.",
                ),
            ),
            UserError::Unauthenticated(reason) => {
                let message = match reason {
                    "TOKEN_EXPIRED" => {
                        Text::new("로그인이 만료되었습니다.", "The access token has expired.")
                    }
                    "AUTHENTICATION_REQUIRED" => {
                        Text::new("로그인이 필요합니다.", "Authentication is required.")
                    }
                    _ => Text::new(
                        "유효하지 않은 토큰입니다.",
                        "The access token is not valid.",
                    ),
                };
                ApiError::new(Code::Unauthenticated, reason, message)
            }
            UserError::Forbidden => ApiError::new(
                Code::PermissionDenied,
                "FORBIDDEN",
                Text::new("권한이 없습니다.", "You are not allowed to do this."),
            ),
            UserError::UserNotFound(_) => ApiError::new(
                Code::NotFound,
                "USER_NOT_FOUND",
                Text::new("존재하지 않는 회원입니다.", "No such user."),
            ),
            UserError::Storage(error) if error.is_unavailable() => ApiError::unavailable(&error),
            UserError::Storage(error) => ApiError::internal(&error),
            UserError::Hashing(error) => ApiError::internal(&error),
            UserError::KeyValue(error) => ApiError::unavailable(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_code_and_reason() {
        let table = [
            (
                UserError::Invalid(vec![]),
                Code::InvalidArgument,
                "VALIDATION_FAILED",
            ),
            (
                UserError::Taken(UniqueField::Email),
                Code::AlreadyExists,
                "EMAIL_TAKEN",
            ),
            (
                UserError::Taken(UniqueField::DisplayName),
                Code::AlreadyExists,
                "DISPLAY_NAME_TAKEN",
            ),
            (
                UserError::Taken(UniqueField::Phone),
                Code::AlreadyExists,
                "PHONE_TAKEN",
            ),
            (
                UserError::BadCredentials,
                Code::Unauthenticated,
                "BAD_CREDENTIALS",
            ),
            (
                UserError::TooManyLoginAttempts,
                Code::ResourceExhausted,
                "TOO_MANY_LOGIN_ATTEMPTS",
            ),
            (
                UserError::InvalidRefreshToken,
                Code::Unauthenticated,
                "INVALID_REFRESH_TOKEN",
            ),
            (
                UserError::RefreshTokenReused,
                Code::Unauthenticated,
                "REFRESH_TOKEN_REUSED",
            ),
            (
                UserError::Unauthenticated("TOKEN_EXPIRED"),
                Code::Unauthenticated,
                "TOKEN_EXPIRED",
            ),
            (UserError::Forbidden, Code::PermissionDenied, "FORBIDDEN"),
            (UserError::UserNotFound(7), Code::NotFound, "USER_NOT_FOUND"),
        ];
        for (error, code, reason) in table {
            assert_eq!(error.reason(), reason);
            let api = error.into_api_error();
            assert_eq!((api.code, api.reason.as_ref()), (code, reason));
        }
    }
}

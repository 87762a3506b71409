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
    #[error("no OAuth provider `{0}` is configured")]
    OAuthProviderNotFound(String),
    /// The provider sent the user back with `error` (the user refused, or it failed).
    #[error("the OAuth provider refused: {0}")]
    OAuthDenied(String),
    /// Unknown, expired or spent `state`, or the state of another provider's login.
    #[error("invalid OAuth state")]
    OAuthStateInvalid,
    /// The provider failed, timed out, answered nonsense, or its breaker is open.
    #[error("the OAuth provider is unavailable: {0}")]
    OAuthProviderUnavailable(String),
    /// The provider refused the code (or the token it had just issued).
    #[error("the OAuth provider rejected the code")]
    OAuthCodeRejected,
    #[error("the OAuth provider gave no usable e-mail address")]
    OAuthEmailMissing,
    #[error("the OAuth provider has not verified the e-mail address")]
    OAuthEmailUnverified,
    /// A first OAuth login with the e-mail of an existing account: never merged silently.
    /// `social`: that account was itself created through OAuth (so it has no password).
    #[error("the e-mail belongs to an existing account")]
    EmailRegistered { social: bool },
    #[error("unknown, expired or used signup token")]
    SignupTokenInvalid,
    /// A race: the identity was linked to another account while this sign-up was completed.
    #[error("the OAuth identity is already linked to an account")]
    OAuthIdentityLinked,
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
            UserError::OAuthProviderNotFound(_) => "OAUTH_PROVIDER_NOT_FOUND",
            UserError::OAuthDenied(_) => "OAUTH_DENIED",
            UserError::OAuthStateInvalid => "OAUTH_STATE_INVALID",
            UserError::OAuthProviderUnavailable(_) => "OAUTH_PROVIDER_UNAVAILABLE",
            UserError::OAuthCodeRejected => "OAUTH_CODE_REJECTED",
            UserError::OAuthEmailMissing => "OAUTH_EMAIL_REQUIRED",
            UserError::OAuthEmailUnverified => "OAUTH_EMAIL_UNVERIFIED",
            UserError::EmailRegistered { .. } => "EMAIL_REGISTERED",
            UserError::SignupTokenInvalid => "SIGNUP_TOKEN_INVALID",
            UserError::OAuthIdentityLinked => "OAUTH_IDENTITY_LINKED",
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
            UserError::OAuthProviderNotFound(_) => ApiError::new(
                Code::NotFound,
                "OAUTH_PROVIDER_NOT_FOUND",
                Text::new(
                    "지원하지 않는 소셜 로그인입니다.",
                    "This login provider is not available.",
                ),
            ),
            UserError::OAuthDenied(_) => ApiError::new(
                Code::Unauthenticated,
                "OAUTH_DENIED",
                Text::new(
                    "소셜 로그인이 취소되었거나 실패했습니다.",
                    "The login at the provider was cancelled or failed.",
                ),
            ),
            UserError::OAuthStateInvalid => ApiError::new(
                Code::Unauthenticated,
                "OAUTH_STATE_INVALID",
                Text::new(
                    "로그인 요청이 만료되었거나 올바르지 않습니다. 다시 시도해 주세요.",
                    "The login request has expired or is not valid. Please start again.",
                ),
            ),
            UserError::OAuthProviderUnavailable(cause) => {
                tracing::warn!(%cause, "OAuth provider unavailable");
                ApiError::new(
                    Code::Unavailable,
                    "OAUTH_PROVIDER_UNAVAILABLE",
                    Text::new(
                        "소셜 로그인 서비스에 일시적으로 연결할 수 없습니다. 잠시 후 다시 시도해 주세요.",
                        "The login provider cannot be reached right now. Please try again shortly.",
                    ),
                )
            }
            UserError::OAuthCodeRejected => ApiError::new(
                Code::Unauthenticated,
                "OAUTH_CODE_REJECTED",
                Text::new(
                    "소셜 로그인 인증에 실패했습니다. 다시 시도해 주세요.",
                    "The provider did not accept the login. Please start again.",
                ),
            ),
            UserError::OAuthEmailMissing => ApiError::new(
                Code::Unauthenticated,
                "OAUTH_EMAIL_REQUIRED",
                Text::new(
                    "이메일 제공에 동의해야 가입할 수 있습니다.",
                    "Signing up needs the e-mail address: please allow the provider to share it.",
                ),
            ),
            UserError::OAuthEmailUnverified => ApiError::new(
                Code::Unauthenticated,
                "OAUTH_EMAIL_UNVERIFIED",
                Text::new(
                    "인증되지 않은 이메일로는 가입할 수 없습니다. 제공자에서 이메일을 인증해 주세요.",
                    "The provider has not verified this e-mail address. Please verify it there first.",
                ),
            ),
            UserError::EmailRegistered { social: false } => ApiError::new(
                Code::AlreadyExists,
                "EMAIL_REGISTERED",
                Text::new(
                    "이미 이메일과 비밀번호로 가입된 계정입니다. 이메일과 비밀번호로 로그인해 주세요. (소셜 계정 연결은 아직 지원하지 않습니다.)",
                    "An account with this e-mail already exists. Please log in with your e-mail and password. (Linking a social login to it is not supported yet.)",
                ),
            ),
            UserError::EmailRegistered { social: true } => ApiError::new(
                Code::AlreadyExists,
                "EMAIL_REGISTERED",
                Text::new(
                    "이 이메일은 다른 소셜 로그인으로 가입되어 있습니다. 가입할 때 사용한 소셜 로그인으로 로그인해 주세요.",
                    "This e-mail already has an account through another social login. Please log in with the one you signed up with.",
                ),
            ),
            UserError::SignupTokenInvalid => ApiError::new(
                Code::Unauthenticated,
                "SIGNUP_TOKEN_INVALID",
                Text::new(
                    "가입 정보가 만료되었습니다. 소셜 로그인을 다시 시도해 주세요.",
                    "The sign-up has expired or was already completed. Please log in with the provider again.",
                ),
            ),
            UserError::OAuthIdentityLinked => ApiError::new(
                Code::AlreadyExists,
                "OAUTH_IDENTITY_LINKED",
                Text::new(
                    "이미 가입된 소셜 계정입니다. 다시 로그인해 주세요.",
                    "This social login already has an account. Please log in again.",
                ),
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
            (
                UserError::OAuthProviderNotFound("x".into()),
                Code::NotFound,
                "OAUTH_PROVIDER_NOT_FOUND",
            ),
            (
                UserError::OAuthDenied("access_denied".into()),
                Code::Unauthenticated,
                "OAUTH_DENIED",
            ),
            (
                UserError::OAuthStateInvalid,
                Code::Unauthenticated,
                "OAUTH_STATE_INVALID",
            ),
            (
                UserError::OAuthProviderUnavailable("500".into()),
                Code::Unavailable,
                "OAUTH_PROVIDER_UNAVAILABLE",
            ),
            (
                UserError::OAuthCodeRejected,
                Code::Unauthenticated,
                "OAUTH_CODE_REJECTED",
            ),
            (
                UserError::OAuthEmailMissing,
                Code::Unauthenticated,
                "OAUTH_EMAIL_REQUIRED",
            ),
            (
                UserError::OAuthEmailUnverified,
                Code::Unauthenticated,
                "OAUTH_EMAIL_UNVERIFIED",
            ),
            (
                UserError::EmailRegistered { social: false },
                Code::AlreadyExists,
                "EMAIL_REGISTERED",
            ),
            (
                UserError::SignupTokenInvalid,
                Code::Unauthenticated,
                "SIGNUP_TOKEN_INVALID",
            ),
            (
                UserError::OAuthIdentityLinked,
                Code::AlreadyExists,
                "OAUTH_IDENTITY_LINKED",
            ),
        ];
        for (error, code, reason) in table {
            assert_eq!(error.reason(), reason);
            let api = error.into_api_error();
            assert_eq!((api.code, api.reason.as_ref()), (code, reason));
        }
    }
}

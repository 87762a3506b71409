//! The user service's gRPC surface: contract messages ⇄ use cases, the caller taken from the
//! verified access token, nothing else. `UserInternalService` is for other services of the
//! fleet (no token, no REST binding).

use std::sync::Arc;

use pillivery_platform::auth::{Caller, caller_from_request};
use pillivery_platform::error::{ApiError, Locale};
use pillivery_proto::user as pb;
use tonic::{Request, Response, Status};

use crate::accounts::{Accounts, TokenPair};
use crate::domain::{SignUpInput, UpdateInput};
use crate::error::UserError;
use crate::oauth::{Callback, CompleteInput, OAuthLogin, OAuthOutcome};
use crate::store::{UserRecord, UserStore};

/// The metadata the gateway puts the client's address in, for the per-IP login limit.
pub const CLIENT_IP_METADATA: &str = "x-client-ip";

type Answer<T> = Result<Response<T>, Status>;

fn failure(locale: Locale) -> impl FnOnce(UserError) -> Status {
    move |error| error.into_api_error().into_status(locale)
}

/// The verified caller; a missing or bad token is a 401 with our error details.
fn caller<T>(accounts: &Accounts, request: &Request<T>) -> Result<Caller, UserError> {
    caller_from_request(accounts.verifier(), request).map_err(|status| {
        // Platform answers with our error details; its reason is kept, the rest rendered here
        // like every other error of this service.
        let reason = ApiError::from_status(&status)
            .map(|decoded| decoded.reason)
            .unwrap_or_else(|| status.message().to_owned());
        UserError::Unauthenticated(match reason.as_str() {
            "AUTHENTICATION_REQUIRED" => "AUTHENTICATION_REQUIRED",
            "TOKEN_EXPIRED" => "TOKEN_EXPIRED",
            _ => "INVALID_TOKEN",
        })
    })
}

/// `pillivery.user.v1.UserService`.
pub struct UserGrpc {
    accounts: Arc<Accounts>,
}

impl UserGrpc {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for UserGrpc {
    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> Answer<pb::User> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let user = self
            .accounts
            .sign_up(SignUpInput {
                email: request.email,
                password: request.password,
                display_name: request.display_name,
                real_name: request.real_name,
                phone: request.phone,
                city: request.city,
                detail_address: request.detail_address,
            })
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(user_message(&user)))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Answer<pb::User> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller(&self.accounts, &request).map_err(failure(locale))?;
        let user = self
            .accounts
            .get_me(&caller)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(user_message(&user)))
    }

    async fn update_me(&self, request: Request<pb::UpdateMeRequest>) -> Answer<pb::User> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller(&self.accounts, &request).map_err(failure(locale))?;
        let request = request.into_inner();
        let user = self
            .accounts
            .update_me(
                &caller,
                UpdateInput {
                    display_name: request.display_name,
                    real_name: request.real_name,
                    phone: request.phone,
                    city: request.city,
                    detail_address: request.detail_address,
                    password: request.password,
                    current_password: request.current_password,
                },
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(user_message(&user)))
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Answer<pb::WithdrawResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller(&self.accounts, &request).map_err(failure(locale))?;
        self.accounts
            .withdraw(&caller)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::WithdrawResponse {}))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Answer<pb::User> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller(&self.accounts, &request).map_err(failure(locale))?;
        let user = self
            .accounts
            .get_user(&caller, request.get_ref().user_id)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(user_message(&user)))
    }
}

/// `pillivery.user.v1.AuthService`.
pub struct AuthGrpc {
    accounts: Arc<Accounts>,
}

impl AuthGrpc {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthGrpc {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Answer<pb::TokenPair> {
        let locale = Locale::from_metadata(request.metadata());
        let client_ip = request
            .metadata()
            .get(CLIENT_IP_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let request = request.into_inner();
        let pair = self
            .accounts
            .login(&request.email, request.password, client_ip.as_deref())
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(token_pair(pair)))
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Answer<pb::TokenPair> {
        let locale = Locale::from_metadata(request.metadata());
        let pair = self
            .accounts
            .refresh(&request.get_ref().refresh_token)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(token_pair(pair)))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Answer<pb::LogoutResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let caller = caller(&self.accounts, &request).map_err(failure(locale))?;
        self.accounts
            .logout(&caller, request.get_ref().refresh_token.as_deref())
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn get_jwks(&self, _request: Request<pb::GetJwksRequest>) -> Answer<pb::Jwks> {
        let keys = self
            .accounts
            .verification_keys()
            .iter()
            .map(|key| {
                let jwk = key.to_jwk();
                let member = |name: &str| jwk[name].as_str().unwrap_or_default().to_owned();
                pb::Jwk {
                    kty: member("kty"),
                    crv: member("crv"),
                    x: member("x"),
                    kid: member("kid"),
                    r#use: member("use"),
                    alg: member("alg"),
                }
            })
            .collect();
        Ok(Response::new(pb::Jwks { keys }))
    }
}

/// `pillivery.user.v1.OAuthService`.
pub struct OAuthGrpc {
    login: Arc<OAuthLogin>,
}

impl OAuthGrpc {
    pub fn new(login: Arc<OAuthLogin>) -> Self {
        Self { login }
    }
}

#[tonic::async_trait]
impl pb::o_auth_service_server::OAuthService for OAuthGrpc {
    async fn start_o_auth(
        &self,
        request: Request<pb::StartOAuthRequest>,
    ) -> Answer<pb::OAuthRedirect> {
        let locale = Locale::from_metadata(request.metadata());
        let location = self
            .login
            .start(&request.get_ref().provider)
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(pb::OAuthRedirect { location }))
    }

    async fn finish_o_auth(
        &self,
        request: Request<pb::FinishOAuthRequest>,
    ) -> Answer<pb::OAuthResult> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let outcome = self
            .login
            .finish(
                &request.provider,
                Callback {
                    code: request.code,
                    state: request.state,
                    error: request.error,
                    error_description: request.error_description,
                },
            )
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(match outcome {
            OAuthOutcome::LoggedIn(pair) => pb::OAuthResult {
                access_token: Some(pair.access_token),
                refresh_token: Some(pair.refresh_token),
                token_type: Some("Bearer".to_owned()),
                expires_in: Some(i64::try_from(pair.expires_in).unwrap_or(i64::MAX)),
                signup_token: None,
                email: None,
                needs_profile: false,
            },
            OAuthOutcome::SignUpNeeded {
                signup_token,
                email,
            } => pb::OAuthResult {
                access_token: None,
                refresh_token: None,
                token_type: None,
                expires_in: None,
                signup_token: Some(signup_token),
                email: Some(email),
                needs_profile: true,
            },
        }))
    }

    async fn complete_o_auth_sign_up(
        &self,
        request: Request<pb::CompleteOAuthSignUpRequest>,
    ) -> Answer<pb::TokenPair> {
        let locale = Locale::from_metadata(request.metadata());
        let request = request.into_inner();
        let pair = self
            .login
            .complete_sign_up(CompleteInput {
                signup_token: request.signup_token,
                display_name: request.display_name,
                phone: request.phone,
                city: request.city,
                detail_address: request.detail_address,
            })
            .await
            .map_err(failure(locale))?;
        Ok(Response::new(token_pair(pair)))
    }
}

/// The most ids one `GetDisplayNames` takes.
pub const MAX_DISPLAY_NAME_IDS: usize = 100;

/// `pillivery.user.v1.UserInternalService`: what other services ask about accounts (today the
/// catalog, for the author's name of a review).
///
/// No token is checked: the service has no REST binding, so the gateway never exposes it, and
/// it is reachable only on the fleet's internal network. It answers display names only, which
/// every review shows publicly anyway.
pub struct UserInternalGrpc {
    store: UserStore,
}

impl UserInternalGrpc {
    pub fn new(store: UserStore) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl pb::user_internal_service_server::UserInternalService for UserInternalGrpc {
    async fn get_display_names(
        &self,
        request: Request<pb::GetDisplayNamesRequest>,
    ) -> Answer<pb::GetDisplayNamesResponse> {
        let locale = Locale::from_metadata(request.metadata());
        let mut user_ids = request.into_inner().user_ids;
        if user_ids.len() > MAX_DISPLAY_NAME_IDS {
            let violation = pillivery_platform::error::FieldViolation::new(
                "userIds",
                serde_json::Value::from(user_ids.len()),
                pillivery_platform::error::Text::new(
                    "한 번에 100명 이하만 조회할 수 있습니다.",
                    "At most 100 users can be read at once.",
                ),
            );
            return Err(failure(locale)(UserError::Invalid(vec![violation])));
        }
        user_ids.sort_unstable();
        user_ids.dedup();
        let users = self
            .store
            .active_display_names(&user_ids)
            .await
            .map_err(|error| failure(locale)(error.into()))?
            .into_iter()
            .map(|(user_id, display_name)| pb::UserDisplayName {
                user_id,
                display_name,
            })
            .collect();
        Ok(Response::new(pb::GetDisplayNamesResponse { users }))
    }
}

fn timestamp(instant: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}

fn user_message(user: &UserRecord) -> pb::User {
    pb::User {
        user_id: user.user_id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        real_name: user.real_name.clone(),
        phone: user.phone.clone(),
        city: user.city.clone(),
        detail_address: user.detail_address.clone(),
        social: user.social,
        created_at: Some(timestamp(user.created_at)),
        updated_at: Some(timestamp(user.updated_at)),
    }
}

fn token_pair(pair: TokenPair) -> pb::TokenPair {
    pb::TokenPair {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: "Bearer".to_owned(),
        expires_in: i64::try_from(pair.expires_in).unwrap_or(i64::MAX),
    }
}

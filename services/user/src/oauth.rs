//! OAuth2 login (authorization code + PKCE + state) with Kakao and Google — the use cases behind
//! `OAuthService`.
//!
//! 1. **Start**: a random `state` and PKCE verifier are kept in the key-value store under
//!    `oauth-state:<state>` for `state_ttl_seconds`; the answer is the provider's authorization
//!    URL with the state and the S256 challenge.
//! 2. **Finish**: the `state` is spent (single-use even when two callbacks race: a
//!    `set_if_absent` claim decides) and must belong to the same provider; the code is exchanged
//!    at the token endpoint with the verifier, and the user info read with the access token.
//!    An identity is `(provider, subject)` in `oauth_identities`:
//!    - linked to an active account → a token pair, as after a password login;
//!    - new, with the e-mail of an existing account → `EMAIL_REGISTERED`: never merged silently.
//!      Linking a provider to an existing account after proving its password is not built yet;
//!      the user logs in with the password;
//!    - new otherwise → a signup ticket (`oauth-signup:<SHA-256 of the token>`, so whoever
//!      reads the store cannot use it) for `signup_ttl_seconds`; the answer carries the token
//!      and the e-mail.
//! 3. **Complete**: the four profile fields are checked by the sign-up rules; the account is
//!    created with `social = true`, no password (a password login for it fails with
//!    `BAD_CREDENTIALS`), the provider's e-mail and — when the provider gives one that passes
//!    the real-name rule — its name as the real name, else an empty real name the user can set
//!    later with `UpdateMe`. Account and identity are written in one transaction. The ticket is
//!    spent on success only: a validation error or a taken display name / phone can be
//!    corrected and sent again with the same ticket.
//!
//! **Calls to the provider** go through one `reqwest` client with `http_timeout_ms` per call
//! and one circuit breaker per provider. Timeouts, connection failures, 5xx and unreadable
//! answers are faults (`OAUTH_PROVIDER_UNAVAILABLE`, 503); a 4xx from the token endpoint is the
//! provider refusing the code (`OAUTH_CODE_REJECTED`, 401) and counts as a healthy answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pillivery_platform::auth::Role;
use pillivery_platform::resilience::{BreakerConfig, CallPermit, CircuitBreaker};
use serde_json::Value;

use crate::accounts::{Accounts, TokenPair, taken_or_storage};
use crate::config::{OAuthConfig, OAuthProvider};
use crate::domain::oauth::{
    PendingLogin, ProfileRefusal, ProviderProfile, SignupTicket, authorize_location,
    code_challenge, random_secret, read_profile, real_name_from, secret_digest, sign_up_email,
};
use crate::domain::{UpdateInput, validate_update};
use crate::error::UserError;
use crate::store::NewUser;

/// Key-value names (under the service's prefix).
const STATE_PREFIX: &str = "oauth-state:";
const STATE_CLAIM_PREFIX: &str = "oauth-state-used:";
const SIGNUP_PREFIX: &str = "oauth-signup:";
const SIGNUP_CLAIM_PREFIX: &str = "oauth-signup-claim:";
/// How long a completion holds its ticket while it writes the account.
const SIGNUP_CLAIM_TTL: Duration = Duration::from_secs(30);

/// What the callback leads to.
#[derive(Debug)]
pub enum OAuthOutcome {
    /// A returning user: logged in.
    LoggedIn(TokenPair),
    /// A first-time user: complete the profile with this token.
    SignUpNeeded { signup_token: String, email: String },
}

/// The provider's callback parameters.
#[derive(Clone, Debug, Default)]
pub struct Callback {
    pub code: String,
    pub state: String,
    pub error: String,
    pub error_description: String,
}

/// The profile a first-time user completes.
#[derive(Clone, Debug, Default)]
pub struct CompleteInput {
    pub signup_token: String,
    pub display_name: String,
    pub phone: String,
    pub city: String,
    pub detail_address: String,
}

/// The OAuth2 use cases over the accounts, the configured providers and an HTTP client.
pub struct OAuthLogin {
    accounts: Arc<Accounts>,
    config: OAuthConfig,
    http: reqwest::Client,
    breakers: BTreeMap<String, CircuitBreaker>,
}

impl OAuthLogin {
    pub fn new(accounts: Arc<Accounts>, config: OAuthConfig) -> Result<OAuthLogin, String> {
        let timeout = Duration::from_millis(config.http_timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pillivery-user/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("OAuth HTTP client: {error}"))?;
        let breakers = config
            .providers
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    CircuitBreaker::new(format!("oauth-{name}"), BreakerConfig::default()),
                )
            })
            .collect();
        Ok(OAuthLogin {
            accounts,
            config,
            http,
            breakers,
        })
    }

    fn provider(&self, name: &str) -> Result<OAuthProvider, UserError> {
        self.config
            .provider(name)
            .ok_or_else(|| UserError::OAuthProviderNotFound(name.to_owned()))
    }

    fn state_ttl(&self) -> Duration {
        Duration::from_secs(self.config.state_ttl_seconds)
    }

    fn signup_ttl(&self) -> Duration {
        Duration::from_secs(self.config.signup_ttl_seconds)
    }

    /// The provider's authorization URL for a new login.
    pub async fn start(&self, provider_name: &str) -> Result<String, UserError> {
        let provider = self.provider(provider_name)?;
        let state = random_secret();
        let code_verifier = random_secret();
        let location = authorize_location(&provider, &state, &code_challenge(&code_verifier))
            .map_err(UserError::OAuthProviderUnavailable)?;
        let pending = serde_json::to_vec(&PendingLogin {
            provider: provider_name.to_owned(),
            code_verifier,
        })
        .expect("a pending login serializes");
        self.accounts
            .kv
            .set(
                &format!("{STATE_PREFIX}{state}"),
                &pending,
                Some(self.state_ttl()),
            )
            .await?;
        Ok(location)
    }

    /// The provider's redirect back (see the module documentation).
    pub async fn finish(
        &self,
        provider_name: &str,
        callback: Callback,
    ) -> Result<OAuthOutcome, UserError> {
        let provider = self.provider(provider_name)?;
        if !callback.error.is_empty() {
            if !callback.state.is_empty() {
                // The login is over either way.
                let _ = self.take_state(&callback.state).await;
            }
            tracing::info!(
                provider = provider_name,
                error = %callback.error,
                description = %callback.error_description,
                "OAuth login refused at the provider"
            );
            return Err(UserError::OAuthDenied(callback.error));
        }
        let pending = self
            .take_state(&callback.state)
            .await?
            .filter(|pending| pending.provider == provider_name)
            .ok_or(UserError::OAuthStateInvalid)?;
        if callback.code.is_empty() {
            return Err(UserError::OAuthCodeRejected);
        }
        let breaker = self
            .breakers
            .get(provider_name)
            .expect("a breaker per configured provider");
        let access_token = self
            .exchange_code(&provider, breaker, &callback.code, &pending.code_verifier)
            .await?;
        let profile = self.user_info(&provider, breaker, &access_token).await?;
        self.log_in_or_sign_up(provider_name, &provider, profile)
            .await
    }

    async fn log_in_or_sign_up(
        &self,
        provider_name: &str,
        provider: &OAuthProvider,
        profile: ProviderProfile,
    ) -> Result<OAuthOutcome, UserError> {
        let store = &self.accounts.store;
        if let Some(user_id) = store.find_identity(provider_name, &profile.subject).await? {
            match store.get(user_id).await? {
                Some(user) if user.is_active() => {
                    tracing::info!(user_id, provider = provider_name, "OAuth login");
                    return self
                        .accounts
                        .start_session(&user)
                        .await
                        .map(OAuthOutcome::LoggedIn);
                }
                // Withdrawal unlinks identities; a link to an inactive account is stale.
                _ => {
                    store
                        .unlink_identity(provider_name, &profile.subject)
                        .await?
                }
            }
        }
        let email = sign_up_email(provider.kind, &profile).map_err(|refusal| match refusal {
            ProfileRefusal::EmailMissing => UserError::OAuthEmailMissing,
            ProfileRefusal::EmailUnverified => UserError::OAuthEmailUnverified,
        })?;
        if let Some(existing) = store.find_active_by_email(&email).await? {
            tracing::info!(
                provider = provider_name,
                user_id = existing.user_id,
                "first OAuth login with the e-mail of an existing account; refused"
            );
            return Err(UserError::EmailRegistered {
                social: existing.social,
            });
        }
        let signup_token = random_secret();
        let ticket = serde_json::to_vec(&SignupTicket {
            provider: provider_name.to_owned(),
            subject: profile.subject.clone(),
            email: email.clone(),
            real_name: real_name_from(&profile),
        })
        .expect("a signup ticket serializes");
        self.accounts
            .kv
            .set(
                &format!("{SIGNUP_PREFIX}{}", secret_digest(&signup_token)),
                &ticket,
                Some(self.signup_ttl()),
            )
            .await?;
        Ok(OAuthOutcome::SignUpNeeded {
            signup_token,
            email,
        })
    }

    /// Spends a `state`: its pending login, or `None` when it is unknown, expired or already
    /// spent (by this call's competitor too).
    async fn take_state(&self, state: &str) -> Result<Option<PendingLogin>, UserError> {
        if state.is_empty() || state.len() > 128 {
            return Ok(None);
        }
        let key = format!("{STATE_PREFIX}{state}");
        let Some(stored) = self.accounts.kv.get(&key).await? else {
            return Ok(None);
        };
        let claimed = self
            .accounts
            .kv
            .set_if_absent(
                &format!("{STATE_CLAIM_PREFIX}{state}"),
                b"1",
                Some(self.state_ttl()),
            )
            .await?;
        self.accounts.kv.delete(&key).await?;
        if !claimed {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&stored).ok())
    }

    /// The token endpoint: the code and the PKCE verifier for an access token.
    async fn exchange_code(
        &self,
        provider: &OAuthProvider,
        breaker: &CircuitBreaker,
        code: &str,
        code_verifier: &str,
    ) -> Result<String, UserError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", provider.redirect_uri.as_str()),
            ("client_id", provider.client_id.as_str()),
        ];
        if !provider.client_secret.is_empty() {
            form.push(("client_secret", provider.client_secret.as_str()));
        }
        form.push(("code_verifier", code_verifier));
        let body = serde_urlencoded::to_string(&form).expect("a form encodes");
        let permit = acquire(breaker)?;
        let request = self
            .http
            .post(&provider.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let answer = call(permit, request, "token").await?;
        answer["access_token"]
            .as_str()
            .filter(|token| !token.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                UserError::OAuthProviderUnavailable("token answer without access_token".into())
            })
    }

    /// The user-info endpoint with the access token.
    async fn user_info(
        &self,
        provider: &OAuthProvider,
        breaker: &CircuitBreaker,
        access_token: &str,
    ) -> Result<ProviderProfile, UserError> {
        let permit = acquire(breaker)?;
        let request = self
            .http
            .get(&provider.userinfo_url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = call(permit, request, "userinfo").await?;
        read_profile(provider.kind, &answer).ok_or_else(|| {
            UserError::OAuthProviderUnavailable("user info without a subject".into())
        })
    }

    /// Creates the first-time user's account from the ticket and the profile (see the module
    /// documentation).
    pub async fn complete_sign_up(&self, input: CompleteInput) -> Result<TokenPair, UserError> {
        if input.signup_token.is_empty() || input.signup_token.len() > 128 {
            return Err(UserError::SignupTokenInvalid);
        }
        let digest = secret_digest(&input.signup_token);
        let ticket_key = format!("{SIGNUP_PREFIX}{digest}");
        let kv = &self.accounts.kv;
        let ticket: SignupTicket = kv
            .get(&ticket_key)
            .await?
            .and_then(|stored| serde_json::from_slice(&stored).ok())
            .ok_or(UserError::SignupTokenInvalid)?;
        let profile = validate_update(UpdateInput {
            display_name: Some(input.display_name),
            phone: Some(input.phone),
            city: Some(input.city),
            detail_address: Some(input.detail_address),
            ..UpdateInput::default()
        })?;
        let (Some(display_name), Some(phone), Some(city), Some(detail_address)) = (
            profile.display_name,
            profile.phone,
            profile.city,
            profile.detail_address,
        ) else {
            // Present fields that pass validation are always kept.
            return Err(UserError::Invalid(Vec::new()));
        };
        let claim_key = format!("{SIGNUP_CLAIM_PREFIX}{digest}");
        if !kv
            .set_if_absent(&claim_key, b"1", Some(SIGNUP_CLAIM_TTL))
            .await?
        {
            return Err(UserError::SignupTokenInvalid);
        }
        let created = self
            .create_linked(
                &ticket,
                NewUser {
                    email: ticket.email.clone(),
                    display_name,
                    real_name: ticket.real_name.clone(),
                    phone,
                    city,
                    detail_address,
                    password_hash: None,
                    social: true,
                    role: Role::User,
                },
            )
            .await;
        match created {
            Ok(pair) => {
                kv.delete(&ticket_key).await?;
                // The claim outlives the ticket, so a ticket whose deletion failed stays spent.
                kv.set(&claim_key, b"1", Some(self.signup_ttl())).await?;
                Ok(pair)
            }
            Err(error) => {
                // Correctable (a taken display name or phone): the ticket stays usable.
                let _ = kv.delete(&claim_key).await;
                Err(error)
            }
        }
    }

    async fn create_linked(
        &self,
        ticket: &SignupTicket,
        new: NewUser,
    ) -> Result<TokenPair, UserError> {
        let store = &self.accounts.store;
        let user = store
            .create_linked_user(&new, &ticket.provider, &ticket.subject, Utc::now())
            .await
            .map_err(taken_or_storage)?;
        tracing::info!(
            user_id = user.user_id,
            provider = %ticket.provider,
            "signed up with OAuth"
        );
        self.accounts.start_session(&user).await
    }
}

fn acquire(breaker: &CircuitBreaker) -> Result<CallPermit, UserError> {
    breaker
        .try_acquire()
        .map_err(|open| UserError::OAuthProviderUnavailable(open.to_string()))
}

/// Sends one request to the provider and reads its JSON answer, recording the outcome with the
/// breaker: 2xx with JSON is a success, 4xx a refusal (the provider is healthy), the rest a
/// fault. 429 says nothing about the provider's health and is not recorded.
async fn call(
    permit: CallPermit,
    request: reqwest::RequestBuilder,
    what: &'static str,
) -> Result<Value, UserError> {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            permit.fault();
            return Err(UserError::OAuthProviderUnavailable(format!(
                "{what}: {error}"
            )));
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        permit.ignore();
        return Err(UserError::OAuthProviderUnavailable(format!(
            "{what}: {status}"
        )));
    }
    if status.is_client_error() {
        permit.success();
        let body = response.text().await.unwrap_or_default();
        let error = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        tracing::info!(%status, error = %error, what, "OAuth provider refused");
        return Err(UserError::OAuthCodeRejected);
    }
    if !status.is_success() {
        permit.fault();
        return Err(UserError::OAuthProviderUnavailable(format!(
            "{what}: {status}"
        )));
    }
    match response.json::<Value>().await {
        Ok(body) => {
            permit.success();
            Ok(body)
        }
        Err(error) => {
            permit.fault();
            Err(UserError::OAuthProviderUnavailable(format!(
                "{what}: unreadable answer: {error}"
            )))
        }
    }
}

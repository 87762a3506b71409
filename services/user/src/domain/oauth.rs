//! OAuth2 login's rules without I/O: the `state` and PKCE values (RFC 7636, S256), the
//! authorization URL, and what a provider's user info must say before it identifies anyone.
//!
//! An identity is `(provider, subject)`: the provider's stable user id (Kakao's numeric `id`,
//! Google's `sub`), never the e-mail address, which a user can change at the provider.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{OAuthKind, OAuthProvider};

/// Bytes of randomness in a `state`, a PKCE verifier and a signup token (256 bits each).
pub const SECRET_BYTES: usize = 32;

/// 256 random bits, base64url without padding (43 characters: a valid PKCE verifier too).
pub fn random_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 PKCE challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn code_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The key-value name of a secret that must not be usable by whoever reads the store: its
/// SHA-256, hex.
pub fn secret_digest(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A started login, stored under its `state` until the provider sends the browser back.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub provider: String,
    pub code_verifier: String,
}

/// A first-time user between the provider's answer and the completed profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupTicket {
    pub provider: String,
    pub subject: String,
    pub email: String,
    /// The provider's name for the person, when it passes the real-name rule; else empty.
    #[serde(default)]
    pub real_name: String,
}

/// The provider's authorization URL for one login (query values form-encoded).
pub fn authorize_location(
    provider: &OAuthProvider,
    state: &str,
    challenge: &str,
) -> Result<String, String> {
    let mut url = reqwest::Url::parse(&provider.authorize_url)
        .map_err(|error| format!("authorize_url: {error}"))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &provider.redirect_uri)
        .append_pair("scope", &provider.scopes)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

/// What a provider said about the person who logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderProfile {
    pub subject: String,
    pub email: Option<String>,
    /// `None` when the provider does not say.
    pub email_verified: Option<bool>,
    pub name: Option<String>,
}

/// Reads a provider's user-info answer; `None` when it names no subject (a broken answer).
///
/// - Kakao: `id` (a number), `kakao_account.email`, `kakao_account.is_email_verified`,
///   `kakao_account.name` (only with the business permission).
/// - Google (OpenID Connect): `sub`, `email`, `email_verified` (a boolean, or the string
///   `"true"` older endpoints send), `name`.
pub fn read_profile(kind: OAuthKind, body: &Value) -> Option<ProviderProfile> {
    let text = |value: &Value| {
        value
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let flag = |value: &Value| match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => text.parse::<bool>().ok(),
        _ => None,
    };
    match kind {
        OAuthKind::Kakao => {
            let subject = match &body["id"] {
                Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
                _ => return None,
            };
            let account = &body["kakao_account"];
            Some(ProviderProfile {
                subject,
                email: text(&account["email"]),
                email_verified: flag(&account["is_email_verified"]),
                name: text(&account["name"]),
            })
        }
        OAuthKind::Google => Some(ProviderProfile {
            subject: text(&body["sub"])?,
            email: text(&body["email"]),
            email_verified: flag(&body["email_verified"]),
            name: text(&body["name"]),
        }),
    }
}

/// Why a provider's profile cannot start a sign-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileRefusal {
    /// No (valid) e-mail address: the user did not consent to share it.
    EmailMissing,
    /// The provider says the address is not verified (Google requires `email_verified: true`;
    /// Kakao is refused only when it says `false`).
    EmailUnverified,
}

/// The normalised e-mail a first-time user signs up with.
pub fn sign_up_email(kind: OAuthKind, profile: &ProviderProfile) -> Result<String, ProfileRefusal> {
    let email = profile
        .email
        .as_deref()
        .and_then(|email| super::account::validate_email(email).ok())
        .ok_or(ProfileRefusal::EmailMissing)?;
    let verified = match kind {
        OAuthKind::Google => profile.email_verified == Some(true),
        OAuthKind::Kakao => profile.email_verified != Some(false),
    };
    if verified {
        Ok(email)
    } else {
        Err(ProfileRefusal::EmailUnverified)
    }
}

/// The provider's name as the account's real name when it passes the real-name rule (no
/// whitespace, at most 50 characters); otherwise empty, for the user to fill in later.
pub fn real_name_from(profile: &ProviderProfile) -> String {
    profile
        .name
        .as_deref()
        .filter(|name| {
            !name.chars().any(char::is_whitespace)
                && name.chars().count() <= super::account::REAL_NAME_MAX_LENGTH
        })
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pkce_matches_the_rfc_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = random_secret();
        assert_eq!(verifier.len(), 43);
        assert_ne!(verifier, random_secret());
    }

    #[test]
    fn the_authorize_location_is_encoded() {
        let provider = OAuthProvider::google("id 1", "secret", "https://shop.example/cb?x=1");
        let location = authorize_location(&provider, "st", "ch").unwrap();
        let url = reqwest::Url::parse(&location).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("id 1"));
        assert_eq!(get("redirect_uri"), Some("https://shop.example/cb?x=1"));
        assert_eq!(get("scope"), Some("openid email profile"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("code_challenge"), Some("ch"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert!(location.starts_with("https://accounts.google.com/o/oauth2/v2/auth?"));
        assert!(!location.contains("shop.example/cb?x=1"));
    }

    #[test]
    fn kakao_profiles() {
        let profile = read_profile(
            OAuthKind::Kakao,
            &json!({"id": 123456789, "kakao_account": {"email": "A@kakao.com", "is_email_verified": true}}),
        )
        .unwrap();
        assert_eq!(profile.subject, "123456789");
        assert_eq!(
            sign_up_email(OAuthKind::Kakao, &profile).unwrap(),
            "a@kakao.com"
        );
        assert!(read_profile(OAuthKind::Kakao, &json!({"id": "12"})).is_none());
        assert!(read_profile(OAuthKind::Kakao, &json!({})).is_none());
        let no_email = read_profile(OAuthKind::Kakao, &json!({"id": 1})).unwrap();
        assert_eq!(
            sign_up_email(OAuthKind::Kakao, &no_email),
            Err(ProfileRefusal::EmailMissing)
        );
        let unverified = read_profile(
            OAuthKind::Kakao,
            &json!({"id": 1, "kakao_account": {"email": "a@b.kr", "is_email_verified": false}}),
        )
        .unwrap();
        assert_eq!(
            sign_up_email(OAuthKind::Kakao, &unverified),
            Err(ProfileRefusal::EmailUnverified)
        );
    }

    #[test]
    fn google_profiles_need_a_verified_email() {
        let read = |body: Value| read_profile(OAuthKind::Google, &body).unwrap();
        let verified = read(json!({"sub": "1", "email": "a@gmail.com", "email_verified": true}));
        assert_eq!(
            sign_up_email(OAuthKind::Google, &verified).unwrap(),
            "a@gmail.com"
        );
        let as_text = read(json!({"sub": "1", "email": "a@gmail.com", "email_verified": "true"}));
        assert!(sign_up_email(OAuthKind::Google, &as_text).is_ok());
        for flag in [json!(false), json!(null), json!("no")] {
            let profile = read(json!({"sub": "1", "email": "a@gmail.com", "email_verified": flag}));
            assert_eq!(
                sign_up_email(OAuthKind::Google, &profile),
                Err(ProfileRefusal::EmailUnverified)
            );
        }
        let bad_email = read(json!({"sub": "1", "email": "nope", "email_verified": true}));
        assert_eq!(
            sign_up_email(OAuthKind::Google, &bad_email),
            Err(ProfileRefusal::EmailMissing)
        );
        assert!(read_profile(OAuthKind::Google, &json!({"email": "a@b.kr"})).is_none());
    }

    #[test]
    fn real_names_only_when_they_pass_the_rule() {
        let with = |name: Option<&str>| ProviderProfile {
            subject: "1".into(),
            email: None,
            email_verified: None,
            name: name.map(str::to_owned),
        };
        assert_eq!(real_name_from(&with(Some("김철수"))), "김철수");
        assert_eq!(real_name_from(&with(Some("John Smith"))), "");
        assert_eq!(real_name_from(&with(None)), "");
        assert_eq!(real_name_from(&with(Some(&"가".repeat(51)))), "");
    }
}

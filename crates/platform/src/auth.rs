//! Access tokens: who is calling, proven by a signature.
//!
//! The user service signs a short-lived JWT when someone logs in ([`TokenIssuer`]); the gateway and
//! every service verify it on each request ([`TokenVerifier`], [`caller_from_request`]) and take
//! the caller's id and role only from it, never from a path, query or body.
//!
//! **Token model.** A compact JWS whose header names the signing key (`kid`) and whose claims are
//! `sub` (the user id, as a decimal string), `role` (`USER` or `ADMIN`), `jti` (a random UUID, the
//! handle for blacklisting on logout), `iat`, `exp` (by default 15 minutes later), `iss` and
//! `aud`. Private keys are Ed25519 in PKCS#8 PEM ([`SigningKey`]); public keys are published as
//! OKP JWKs ([`VerificationKey`], [`jwks`]). A verifier holds several public keys at once so a key
//! can be rotated: issue with the new key while tokens signed by the old one are still accepted.
//! Any other JWT signed with the same key (a sign-up token, say) must use a different `aud`, so it
//! can never pass as an access token.
//!
//! **Why EdDSA only.** The classic JWT attacks all come from letting the token choose how it is
//! checked: `alg: none`, or `HS256` with the *public* key used as the HMAC secret. The verifier
//! therefore reads the header's `alg` first and refuses anything but `EdDSA` before any
//! cryptography runs, and the keys it holds can only ever verify Ed25519. One algorithm also means
//! small keys and signatures, fast verification and no parameters to get wrong.
//!
//! Time is an argument ([`TokenVerifier::verify`] takes `now`), never read from the clock inside,
//! so expiry is deterministic in tests. Tokens are credentials: never log them.

use std::collections::HashSet;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Locale, Text};

/// The only signature algorithm we issue or accept, as it is spelled in a JWT header.
const ALGORITHM_NAME: &str = "EdDSA";
/// Longer input is refused before any parsing: ours are about 400 bytes.
const MAX_TOKEN_LENGTH: usize = 8 * 1024;
/// Token ids are UUIDs; the bound keeps a blacklist key small whatever a token claims.
const MAX_TOKEN_ID_LENGTH: usize = 128;
const ED25519_PUBLIC_KEY_LENGTH: usize = 32;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// What a caller may do, as the `role` claim spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// The claim value: `USER` or `ADMIN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Admin => "ADMIN",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TokenError;

    /// Exactly `USER` or `ADMIN`: a role is never guessed from a near miss.
    fn from_str(value: &str) -> Result<Role, TokenError> {
        match value {
            "USER" => Ok(Role::User),
            "ADMIN" => Ok(Role::Admin),
            _ => Err(TokenError::InvalidClaim("role")),
        }
    }
}

/// The verified identity behind a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub role: Role,
    /// The token's `jti`: what logout blacklists.
    pub token_id: String,
    /// The token's `exp`: how long a blacklist entry for it must live.
    pub expires_at: DateTime<Utc>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// How tokens are stamped and checked; the same values on the issuing and verifying side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim.
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl_seconds: u64,
    /// Clock skew forgiven between the issuer and a verifier, for `exp`, `iat` and `nbf`.
    pub leeway_seconds: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            issuer: "pillivery".to_owned(),
            audience: "pillivery-api".to_owned(),
            access_ttl_seconds: 900,
            leeway_seconds: 5,
        }
    }
}

/// Why a key could not be read, parsed or stored. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    InvalidPrivateKey(&'static str),
    #[error("not an Ed25519 public JWK: {0}")]
    InvalidJwk(&'static str),
    #[error("signing key file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a token was refused. Every one of them is a 401 at the edge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's key id names no configured key")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for someone else")]
    WrongAudience,
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token's `{0}` claim is not valid")]
    InvalidClaim(&'static str),
}

impl TokenError {
    /// The stable code a client sees: `TOKEN_EXPIRED` (refresh and retry) or `INVALID_TOKEN`.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Expired => "TOKEN_EXPIRED",
            _ => "INVALID_TOKEN",
        }
    }
}

/// An Ed25519 private key with the id tokens signed by it carry in their header.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    /// The PKCS#8 document (also what jsonwebtoken signs with).
    encoding: EncodingKey,
    public_key: [u8; ED25519_PUBLIC_KEY_LENGTH],
}

impl SigningKey {
    /// Reads an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what
    /// `openssl genpkey -algorithm ed25519` writes). Without `kid`, the key id is the RFC 7638
    /// JWK thumbprint of the public key, so the same key always gets the same id.
    ///
    /// A PEM squeezed into one environment variable line with literal `\n` is accepted too.
    pub fn from_pkcs8_pem(pem: &str, kid: Option<String>) -> Result<SigningKey, AuthError> {
        let der = pem_to_der(pem)?;
        SigningKey::from_pkcs8_der(&der, kid)
    }

    fn from_pkcs8_der(der: &[u8], kid: Option<String>) -> Result<SigningKey, AuthError> {
        let key_pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| AuthError::InvalidPrivateKey("not an Ed25519 PKCS#8 key"))?;
        let public_key: [u8; ED25519_PUBLIC_KEY_LENGTH] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AuthError::InvalidPrivateKey("unexpected public key length"))?;
        let kid = match kid {
            Some(kid) if kid.is_empty() => {
                return Err(AuthError::InvalidPrivateKey("the key id is empty"));
            }
            Some(kid) => kid,
            None => jwk_thumbprint(&public_key),
        };
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ed_der(der),
            public_key,
        })
    }

    /// A fresh random key, for the embedded fleet and for tests.
    pub fn generate() -> SigningKey {
        let key_pair =
            Ed25519KeyPair::generate().expect("the system random generator is available");
        let der = key_pair
            .to_pkcs8v1()
            .expect("a generated Ed25519 key serializes");
        SigningKey::from_pkcs8_der(der.as_ref(), None).expect("a generated Ed25519 key parses back")
    }

    /// The key as PKCS#8 v1 PEM, readable by [`SigningKey::from_pkcs8_pem`] and OpenSSL.
    pub fn to_pkcs8_pem(&self) -> String {
        let body = STANDARD.encode(self.encoding.as_bytes());
        let mut pem = String::with_capacity(body.len() + 64);
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    /// The embedded fleet's key: read from `path` when the file exists, else generated and
    /// written there (owner-only permissions, via a temporary file so a crash never leaves half a
    /// key). If another process creates the file first, its key wins and is returned.
    pub fn load_or_generate(path: &Path) -> Result<SigningKey, AuthError> {
        let file_error = |source| AuthError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                warn_if_readable_by_others(path);
                return SigningKey::from_pkcs8_pem(&pem, None);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(file_error(error)),
        }

        let key = SigningKey::generate();
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&directory).map_err(file_error)?;
        let file_name = path
            .file_name()
            .ok_or_else(|| file_error(std::io::ErrorKind::InvalidInput.into()))?;
        let mut temporary_name = file_name.to_owned();
        temporary_name.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        let temporary = directory.join(temporary_name);

        let written = write_private_file(&temporary, key.to_pkcs8_pem().as_bytes())
            .and_then(|()| publish_without_clobbering(&temporary, path));
        let _ = std::fs::remove_file(&temporary);
        match written {
            Ok(true) => {
                if let Ok(directory) = std::fs::File::open(&directory) {
                    let _ = directory.sync_all();
                }
                Ok(key)
            }
            // Someone else won the race: use their key, so every process agrees.
            Ok(false) => {
                let pem = std::fs::read_to_string(path).map_err(file_error)?;
                SigningKey::from_pkcs8_pem(&pem, None)
            }
            Err(error) => Err(file_error(error)),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, to verify tokens and publish in the JWKS.
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey::from_raw(self.public_key, self.kid.clone())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key with its key id.
#[derive(Clone)]
pub struct VerificationKey {
    kid: String,
    public_key: [u8; ED25519_PUBLIC_KEY_LENGTH],
    decoding: DecodingKey,
}

impl VerificationKey {
    fn from_raw(public_key: [u8; ED25519_PUBLIC_KEY_LENGTH], kid: String) -> VerificationKey {
        VerificationKey {
            kid,
            // For EdDSA jsonwebtoken expects the raw 32 public key bytes here.
            decoding: DecodingKey::from_ed_der(&public_key),
            public_key,
        }
    }

    /// Reads an OKP/Ed25519 public JWK. `alg` and `use`, when present, must be `EdDSA` and `sig`;
    /// a JWK carrying the private part (`d`) is refused so private keys never end up in
    /// verification-key lists. Without `kid`, the RFC 7638 thumbprint is the key id.
    pub fn from_jwk(jwk: &Value) -> Result<VerificationKey, AuthError> {
        let jwk = jwk
            .as_object()
            .ok_or(AuthError::InvalidJwk("not a JSON object"))?;
        let text = |name: &'static str| match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(AuthError::InvalidJwk("a member is not a string")),
        };
        if text("kty")? != Some("OKP") {
            return Err(AuthError::InvalidJwk("kty is not OKP"));
        }
        if text("crv")? != Some("Ed25519") {
            return Err(AuthError::InvalidJwk("crv is not Ed25519"));
        }
        if text("alg")?.is_some_and(|alg| alg != ALGORITHM_NAME) {
            return Err(AuthError::InvalidJwk("alg is not EdDSA"));
        }
        if text("use")?.is_some_and(|usage| usage != "sig") {
            return Err(AuthError::InvalidJwk("use is not sig"));
        }
        if jwk.contains_key("d") {
            return Err(AuthError::InvalidJwk("it holds a private key"));
        }
        let x = text("x")?.ok_or(AuthError::InvalidJwk("x is missing"))?;
        let public_key: [u8; ED25519_PUBLIC_KEY_LENGTH] = URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| AuthError::InvalidJwk("x is not base64url"))?
            .try_into()
            .map_err(|_| AuthError::InvalidJwk("x is not 32 bytes"))?;
        let kid = match text("kid")? {
            Some("") => return Err(AuthError::InvalidJwk("kid is empty")),
            Some(kid) => kid.to_owned(),
            None => jwk_thumbprint(&public_key),
        };
        Ok(VerificationKey::from_raw(public_key, kid))
    }

    /// `{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"use":"sig","alg":"EdDSA"}`
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM_NAME,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("x", &URL_SAFE_NO_PAD.encode(self.public_key))
            .finish()
    }
}

impl PartialEq for VerificationKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.public_key == other.public_key
    }
}

impl Eq for VerificationKey {}

/// The JWK Set document served at `/api/.well-known/jwks.json`: `{"keys":[…]}`.
pub fn jwks(keys: &[VerificationKey]) -> Value {
    json!({ "keys": keys.iter().map(VerificationKey::to_jwk).collect::<Vec<_>>() })
}

/// A freshly signed access token, ready for the login answer.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWT. A credential: never log it.
    pub token: String,
    /// The `jti` claim.
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
    /// The SPEC's `expiresIn`.
    pub expires_in_seconds: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .field("expires_in_seconds", &self.expires_in_seconds)
            .finish()
    }
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    sub: String,
    role: Role,
    jti: &'a str,
    iat: i64,
    exp: i64,
    iss: &'a str,
    aud: &'a str,
}

/// Signs access tokens with one key (the user service holds it).
pub struct TokenIssuer {
    key: SigningKey,
    config: TokenConfig,
}

impl TokenIssuer {
    pub fn new(key: SigningKey, config: TokenConfig) -> TokenIssuer {
        TokenIssuer { key, config }
    }

    /// The public half of the signing key, for this side's own verifier and JWKS.
    pub fn verification_key(&self) -> VerificationKey {
        self.key.verification_key()
    }

    /// Signs a token for `user_id` (positive: verifiers refuse any other), valid from `now` for
    /// the configured lifetime.
    pub fn issue(&self, user_id: i64, role: Role, now: DateTime<Utc>) -> IssuedToken {
        debug_assert!(user_id > 0, "user ids are positive");
        let token_id = uuid::Uuid::new_v4().to_string();
        // Beyond any sensible configuration, and keeps the arithmetic below in range.
        let ttl_seconds = self.config.access_ttl_seconds.min(u64::from(u32::MAX));
        let issued_at = now.timestamp();
        let expires_at_seconds = issued_at + ttl_seconds as i64;
        let claims = AccessClaims {
            sub: user_id.to_string(),
            role,
            jti: &token_id,
            iat: issued_at,
            exp: expires_at_seconds,
            iss: &self.config.issuer,
            aud: &self.config.audience,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.kid.clone());
        // The key parsed as Ed25519 when it was built and the claims always serialize, so
        // signing has nothing left that can fail.
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .expect("an Ed25519 key signs");
        IssuedToken {
            token,
            token_id,
            expires_at: DateTime::from_timestamp(expires_at_seconds, 0)
                .expect("a token expires within chrono's range"),
            expires_in_seconds: ttl_seconds,
        }
    }
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.key.kid)
            .field("config", &self.config)
            .finish()
    }
}

/// Checks access tokens against a set of public keys, chosen by the token's `kid`. Cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    keys: Vec<VerificationKey>,
    config: TokenConfig,
    /// Signature and structure only: every claim is checked by [`TokenVerifier`] itself, against
    /// the `now` it is given.
    validation: Validation,
}

impl TokenVerifier {
    /// Several keys at once allow rotation. Keys sharing a `kid` are all tried.
    pub fn new(keys: Vec<VerificationKey>, config: TokenConfig) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        TokenVerifier {
            inner: Arc::new(VerifierInner {
                keys,
                config,
                validation,
            }),
        }
    }

    pub fn keys(&self) -> &[VerificationKey] {
        &self.inner.keys
    }

    pub fn config(&self) -> &TokenConfig {
        &self.inner.config
    }

    /// Checks, in order: shape, `alg` (EdDSA only, before any cryptography), `kid`, signature,
    /// `iss`, `aud`, `exp`, `iat`/`nbf` (all against `now` with the configured leeway), then
    /// `sub`, `role` and `jti`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Caller, TokenError> {
        if token.len() > MAX_TOKEN_LENGTH {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(encoded_header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = decode_json_object(encoded_header)?;
        match header.get("alg") {
            Some(Value::String(alg)) if alg == ALGORITHM_NAME => {}
            _ => return Err(TokenError::WrongAlgorithm),
        }
        // We implement no JWS extension, so one marked critical can't be honoured (RFC 7515 §4.1.11).
        if header.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let Some(Value::String(kid)) = header.get("kid") else {
            return Err(TokenError::UnknownKey);
        };

        let mut outcome = Err(TokenError::UnknownKey);
        for key in self.inner.keys.iter().filter(|key| &key.kid == kid) {
            outcome = jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &key.decoding,
                &self.inner.validation,
            )
            .map(|data| data.claims)
            .map_err(|error| token_error(error.kind()));
            if outcome != Err(TokenError::BadSignature) {
                break;
            }
        }
        self.check_claims(&outcome?, now)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Caller, TokenError> {
        let config = &self.inner.config;
        let leeway = i64::try_from(config.leeway_seconds).unwrap_or(i64::MAX);
        let now = now.timestamp();

        match claims.get("iss") {
            None => return Err(TokenError::MissingClaim("iss")),
            Some(Value::String(issuer)) if *issuer == config.issuer => {}
            Some(_) => return Err(TokenError::WrongIssuer),
        }
        let audience_matches = match claims.get("aud") {
            None => return Err(TokenError::MissingClaim("aud")),
            Some(Value::String(audience)) => *audience == config.audience,
            Some(Value::Array(audiences)) => audiences
                .iter()
                .any(|audience| audience.as_str() == Some(config.audience.as_str())),
            Some(_) => false,
        };
        if !audience_matches {
            return Err(TokenError::WrongAudience);
        }

        let expires_at = numeric_date(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        if now >= expires_at.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        let issued_at = numeric_date(claims, "iat")?.ok_or(TokenError::MissingClaim("iat"))?;
        let not_before = numeric_date(claims, "nbf")?.unwrap_or(issued_at);
        if issued_at.max(not_before) > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        let expires_at =
            DateTime::from_timestamp(expires_at, 0).ok_or(TokenError::InvalidClaim("exp"))?;

        let user_id = match claims.get("sub") {
            None => return Err(TokenError::MissingClaim("sub")),
            Some(Value::String(subject)) => {
                parse_user_id(subject).ok_or(TokenError::InvalidClaim("sub"))?
            }
            Some(_) => return Err(TokenError::InvalidClaim("sub")),
        };
        let role = match claims.get("role") {
            None => return Err(TokenError::MissingClaim("role")),
            Some(Value::String(role)) => role.parse()?,
            Some(_) => return Err(TokenError::InvalidClaim("role")),
        };
        let token_id = match claims.get("jti") {
            None => return Err(TokenError::MissingClaim("jti")),
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_TOKEN_ID_LENGTH => {
                jti.clone()
            }
            Some(_) => return Err(TokenError::InvalidClaim("jti")),
        };

        Ok(Caller {
            user_id,
            role,
            token_id,
            expires_at,
        })
    }
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field(
                "kids",
                &self
                    .inner
                    .keys
                    .iter()
                    .map(VerificationKey::kid)
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The bearer token of `authorization: Bearer <token>` in gRPC metadata, if exactly one
/// well-formed one is there.
pub fn bearer_from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let mut values = metadata.get_all("authorization").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    bearer_from_value(value.to_str().ok()?)
}

/// The bearer token of an HTTP `Authorization: Bearer <token>` header, if exactly one
/// well-formed one is there.
pub fn bearer_from_headers(headers: &http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    bearer_from_value(value.to_str().ok()?)
}

/// RFC 6750 §2.1: `Bearer 1*SP b64token`, the scheme case-insensitive (RFC 9110 §11.1).
/// Surrounding whitespace is forgiven; anything else (a second word, a character outside
/// the b64token alphabet) means no token rather than a guess.
fn bearer_from_value(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let is_b64token = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    is_b64token.then_some(token)
}

/// The key-value prefix of blacklisted access tokens.
pub const TOKEN_BLACKLIST_PREFIX: &str = "token-blacklist:";

/// Where a logged-out access token's id is kept until the token expires; the gateway and the
/// services refuse any token whose `jti` is there.
pub fn blacklist_key(token_id: &str) -> String {
    format!("{TOKEN_BLACKLIST_PREFIX}{token_id}")
}

/// Set for one access-token lifetime when an account is withdrawn: every token of that user
/// issued before is refused at once, not only the one used to withdraw.
pub fn withdrawn_key(user_id: i64) -> String {
    format!("user-withdrawn:{user_id}")
}

/// Why a request is not authenticated, as the client-facing error (401 in the SPEC shape).
pub fn unauthenticated(reason: &'static str) -> ApiError {
    let text = match reason {
        "TOKEN_EXPIRED" => Text::new(
            "로그인이 만료되었습니다. 다시 로그인해 주세요.",
            "The access token has expired. Please log in again.",
        ),
        "AUTHENTICATION_REQUIRED" => {
            Text::new("로그인이 필요합니다.", "Authentication is required.")
        }
        "TOKEN_REVOKED" => Text::new(
            "더 이상 유효하지 않은 토큰입니다. 다시 로그인해 주세요.",
            "The access token is no longer valid. Please log in again.",
        ),
        _ => Text::new(
            "유효하지 않은 토큰입니다.",
            "The access token is not valid.",
        ),
    };
    ApiError::new(tonic::Code::Unauthenticated, reason, text)
}

/// The caller behind a gRPC request, from its bearer token checked against the clock now.
/// Missing or refused tokens answer `UNAUTHENTICATED` in the SPEC error shape, in the request's
/// language.
pub fn caller_from_request<T>(
    verifier: &TokenVerifier,
    request: &tonic::Request<T>,
) -> Result<Caller, tonic::Status> {
    let locale = Locale::from_metadata(request.metadata());
    let token = bearer_from_metadata(request.metadata())
        .ok_or_else(|| unauthenticated("AUTHENTICATION_REQUIRED").into_status(locale))?;
    verifier
        .verify(token, Utc::now())
        .map_err(|error| unauthenticated(error.reason()).into_status(locale))
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::WrongAlgorithm,
        // A configured key jsonwebtoken can't use: no token can be proven with it.
        ErrorKind::InvalidEddsaKey | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
        _ => TokenError::Malformed,
    }
}

fn decode_json_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// An integral NumericDate claim, if present.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or(TokenError::InvalidClaim(name)),
    }
}

/// Only the canonical decimal form of a positive id: no sign, no leading zero, no spaces.
fn parse_user_id(subject: &str) -> Option<i64> {
    let canonical = !subject.is_empty()
        && !subject.starts_with('0')
        && subject.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return None;
    }
    subject.parse().ok()
}

/// RFC 7638: base64url(SHA-256) of the required members in lexicographic order, no whitespace.
fn jwk_thumbprint(public_key: &[u8; ED25519_PUBLIC_KEY_LENGTH]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, AuthError> {
    // `\n` written out: a PEM kept on one line of an environment file.
    let pem = pem.replace("\\n", "\n").replace("\\r", "");
    let start = pem.find(PEM_BEGIN).ok_or(AuthError::InvalidPrivateKey(
        "no -----BEGIN PRIVATE KEY----- line",
    ))? + PEM_BEGIN.len();
    let length = pem[start..]
        .find(PEM_END)
        .ok_or(AuthError::InvalidPrivateKey(
            "no -----END PRIVATE KEY----- line",
        ))?;
    let body: String = pem[start..start + length]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| AuthError::InvalidPrivateKey("the body is not base64"))
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Puts the finished temporary file at `path` unless a file is already there: `Ok(false)` then.
/// A hard link never replaces an existing file; where links aren't supported, rename.
fn publish_without_clobbering(temporary: &Path, path: &Path) -> std::io::Result<bool> {
    match std::fs::hard_link(temporary, path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => std::fs::rename(temporary, path).map(|()| true),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the token signing key file is readable by other users; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn bearer_value_follows_rfc_6750() {
        let cases = [
            ("Bearer abc.def.ghi", Some("abc.def.ghi")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Bearer    abc", Some("abc")),
            ("  Bearer abc  ", Some("abc")),
            ("Bearer abc==", Some("abc==")),
            ("Bearer a-b_c~d+e/f", Some("a-b_c~d+e/f")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Bearer ==", None),
            ("Bearerabc", None),
            ("Bearer\tabc", None),
            ("Basic abc", None),
            ("Bearer abc def", None),
            ("Bearer abc=def", None),
            ("Bearer ab\"c", None),
            ("", None),
            ("Bé", None),
            ("Béarer abc", None),
        ];
        for (value, expected) in cases {
            assert_eq!(bearer_from_value(value), expected, "{value:?}");
        }
    }

    #[test]
    fn user_ids_must_be_canonical_and_positive() {
        for (subject, expected) in [
            ("1", Some(1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("0", None),
            ("-1", None),
            ("+1", None),
            ("01", None),
            (" 1", None),
            ("1.0", None),
            ("", None),
            ("9223372036854775808", None),
            ("١", None),
        ] {
            assert_eq!(parse_user_id(subject), expected, "{subject:?}");
        }
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let public_key: [u8; 32] = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            jwk_thumbprint(&public_key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc_8037_private_key_signs_like_the_rfc() {
        // RFC 8037 appendix A.1 seed as a PKCS#8 v1 document, A.4's signature over "Example of Ed25519 signing".
        let seed = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let key = SigningKey::from_pkcs8_der(&der, None).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let message = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, Algorithm::EdDSA)
                .unwrap();
        assert_eq!(
            signature,
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn claims_are_checked_against_the_given_time() {
        let key = SigningKey::generate();
        let config = TokenConfig::default();
        let issuer = TokenIssuer::new(key.clone(), config.clone());
        let verifier = TokenVerifier::new(vec![key.verification_key()], config);
        let issued = issuer.issue(7, Role::User, at(1_000_000));
        assert_eq!(issued.expires_at, at(1_000_900));
        // Valid until exp + leeway (exclusive), and from iat - leeway.
        assert!(verifier.verify(&issued.token, at(1_000_904)).is_ok());
        assert_eq!(
            verifier.verify(&issued.token, at(1_000_905)),
            Err(TokenError::Expired)
        );
        assert!(verifier.verify(&issued.token, at(999_995)).is_ok());
        assert_eq!(
            verifier.verify(&issued.token, at(999_994)),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let key = SigningKey::generate();
        let issuer = TokenIssuer::new(key.clone(), TokenConfig::default());
        let issued = issuer.issue(1, Role::Admin, Utc::now());
        let printed = format!("{key:?} {issuer:?} {issued:?}");
        assert!(!printed.contains(&issued.token), "{printed}");
        let pem = key.to_pkcs8_pem();
        let body = pem.lines().nth(1).unwrap();
        assert!(!printed.contains(body), "{printed}");
    }
}

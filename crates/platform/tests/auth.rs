//! Access tokens through the public API: what is accepted, and every way a forged, stale or
//! misdirected token is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use pillivery_platform::auth::{
    Caller, Role, SigningKey, TokenConfig, TokenError, TokenIssuer, TokenVerifier, VerificationKey,
    bearer_from_headers, bearer_from_metadata, caller_from_request, jwks,
};
use serde_json::{Value, json};

const NOW: i64 = 1_790_000_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

fn seconds_after(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(NOW + seconds, 0).unwrap()
}

fn verifier_for(keys: &[&SigningKey]) -> TokenVerifier {
    TokenVerifier::new(
        keys.iter().map(|key| key.verification_key()).collect(),
        TokenConfig::default(),
    )
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn valid_claims() -> Value {
    json!({
        "sub": "42", "role": "USER", "jti": "0b4c5d9e-0000-4000-8000-000000000001",
        "iat": NOW, "exp": NOW + 900, "iss": "pillivery", "aud": "pillivery-api",
    })
}

/// A token signed by `key` with arbitrary claims, through jsonwebtoken directly.
fn sign_claims(key: &SigningKey, claims: &Value) -> String {
    let encoding = jsonwebtoken::EncodingKey::from_ed_pem(key.to_pkcs8_pem().as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// An HS256 token over `claims` with `secret` as the HMAC key.
fn hs256_token(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn issued_token_verifies_to_its_caller() {
    let key = SigningKey::generate();
    let issuer = TokenIssuer::new(key.clone(), TokenConfig::default());
    let issued = issuer.issue(42, Role::Admin, now());

    assert_eq!(issued.expires_in_seconds, 900);
    assert_eq!(issued.expires_at, seconds_after(900));
    assert!(uuid::Uuid::parse_str(&issued.token_id).is_ok());

    let caller = verifier_for(&[&key]).verify(&issued.token, now()).unwrap();
    assert_eq!(
        caller,
        Caller {
            user_id: 42,
            role: Role::Admin,
            token_id: issued.token_id.clone(),
            expires_at: seconds_after(900),
        }
    );
    assert!(caller.is_admin());
}

#[test]
fn token_carries_exactly_the_documented_header_and_claims() {
    let key = SigningKey::generate();
    let issued = TokenIssuer::new(key.clone(), TokenConfig::default()).issue(7, Role::User, now());
    let parts: Vec<&str> = issued.token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"typ": "JWT", "alg": "EdDSA", "kid": key.kid()})
    );
    assert_eq!(
        claims,
        json!({
            "sub": "7", "role": "USER", "jti": issued.token_id, "iat": NOW, "exp": NOW + 900,
            "iss": "pillivery", "aud": "pillivery-api",
        })
    );
}

#[test]
fn expiry_counts_from_the_given_time_with_leeway() {
    let key = SigningKey::generate();
    let issued = TokenIssuer::new(key.clone(), TokenConfig::default()).issue(1, Role::User, now());
    let verifier = verifier_for(&[&key]);
    assert!(verifier.verify(&issued.token, seconds_after(899)).is_ok());
    assert!(verifier.verify(&issued.token, seconds_after(904)).is_ok());
    let expired = verifier
        .verify(&issued.token, seconds_after(905))
        .unwrap_err();
    assert_eq!(expired, TokenError::Expired);
    assert_eq!(expired.reason(), "TOKEN_EXPIRED");
    assert_eq!(
        verifier.verify(&issued.token, seconds_after(86_400)),
        Err(TokenError::Expired)
    );
}

#[test]
fn token_from_the_future_is_refused() {
    let key = SigningKey::generate();
    let issued = TokenIssuer::new(key.clone(), TokenConfig::default()).issue(
        1,
        Role::User,
        seconds_after(60),
    );
    let refused = verifier_for(&[&key])
        .verify(&issued.token, now())
        .unwrap_err();
    assert_eq!(refused, TokenError::NotYetValid);
    assert_eq!(refused.reason(), "INVALID_TOKEN");

    let mut claims = valid_claims();
    claims["nbf"] = json!(NOW + 60);
    let token = sign_claims(&key, &claims);
    assert_eq!(
        verifier_for(&[&key]).verify(&token, now()),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn tampered_payload_fails_the_signature() {
    let key = SigningKey::generate();
    let issued = TokenIssuer::new(key.clone(), TokenConfig::default()).issue(42, Role::User, now());
    let parts: Vec<&str> = issued.token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("ADMIN");
    claims["sub"] = json!("1");
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    let verifier = verifier_for(&[&key]);
    assert_eq!(
        verifier.verify(&forged, now()),
        Err(TokenError::BadSignature)
    );

    // A flipped signature bit as well.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(
        verifier.verify(&flipped, now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn another_key_with_the_same_kid_fails_the_signature() {
    let trusted = SigningKey::generate();
    let impostor_pem = SigningKey::generate().to_pkcs8_pem();
    let impostor =
        SigningKey::from_pkcs8_pem(&impostor_pem, Some(trusted.kid().to_owned())).unwrap();
    assert_eq!(impostor.kid(), trusted.kid());
    let token = TokenIssuer::new(impostor, TokenConfig::default())
        .issue(1, Role::Admin, now())
        .token;
    assert_eq!(
        verifier_for(&[&trusted]).verify(&token, now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let trusted = SigningKey::generate();
    let stranger = SigningKey::generate();
    let token = TokenIssuer::new(stranger, TokenConfig::default())
        .issue(1, Role::User, now())
        .token;
    assert_eq!(
        verifier_for(&[&trusted]).verify(&token, now()),
        Err(TokenError::UnknownKey)
    );

    // No kid at all.
    let encoding =
        jsonwebtoken::EncodingKey::from_ed_pem(trusted.to_pkcs8_pem().as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    let token = jsonwebtoken::encode(&header, &valid_claims(), &encoding).unwrap();
    assert_eq!(
        verifier_for(&[&trusted]).verify(&token, now()),
        Err(TokenError::UnknownKey)
    );

    // A verifier with no keys trusts nothing.
    let token = TokenIssuer::new(trusted, TokenConfig::default())
        .issue(1, Role::User, now())
        .token;
    assert_eq!(
        TokenVerifier::new(vec![], TokenConfig::default()).verify(&token, now()),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn alg_none_is_refused() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": key.kid()});
        let unsigned = format!("{}.{}.", b64(&header), b64(&valid_claims()));
        let refused = verifier.verify(&unsigned, now()).unwrap_err();
        assert_eq!(refused, TokenError::WrongAlgorithm, "alg {alg}");
        assert_eq!(refused.reason(), "INVALID_TOKEN");
    }
    // The gateway test's literal token, and a header without alg.
    assert_eq!(
        verifier.verify("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", now()),
        Err(TokenError::WrongAlgorithm)
    );
    let no_alg = format!(
        "{}.{}.",
        b64(&json!({"kid": key.kid()})),
        b64(&valid_claims())
    );
    assert_eq!(
        verifier.verify(&no_alg, now()),
        Err(TokenError::WrongAlgorithm)
    );
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);
    let jwk = key.verification_key().to_jwk();
    let raw_public_key = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let secrets: [Vec<u8>; 4] = [
        raw_public_key,
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
        serde_json::to_vec(&jwk).unwrap(),
        key.to_pkcs8_pem().into_bytes(),
    ];
    for secret in secrets {
        let token = hs256_token(key.kid(), &valid_claims(), &secret);
        assert_eq!(
            verifier.verify(&token, now()),
            Err(TokenError::WrongAlgorithm)
        );
    }
}

#[test]
fn other_algorithms_are_refused_before_any_check() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);
    let real = TokenIssuer::new(key.clone(), TokenConfig::default())
        .issue(1, Role::User, now())
        .token;
    let (_, rest) = real.split_once('.').unwrap();
    for alg in [
        "RS256", "ES256", "PS256", "HS512", "Ed25519", "EDDSA", "eddsa", "",
    ] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": key.kid()});
        // Even with a genuine EdDSA signature only the header changes: refused on alg alone.
        let token = format!("{}.{rest}", b64(&header));
        assert_eq!(
            verifier.verify(&token, now()),
            Err(TokenError::WrongAlgorithm),
            "alg {alg:?}"
        );
    }
    let header = json!({"alg": ["EdDSA"], "kid": key.kid()});
    let token = format!("{}.{rest}", b64(&header));
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TokenError::WrongAlgorithm)
    );
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);

    let other_issuer = TokenConfig {
        issuer: "someone-else".to_owned(),
        ..TokenConfig::default()
    };
    let token = TokenIssuer::new(key.clone(), other_issuer)
        .issue(1, Role::User, now())
        .token;
    assert_eq!(verifier.verify(&token, now()), Err(TokenError::WrongIssuer));

    let other_audience = TokenConfig {
        audience: "pillivery-signup".to_owned(),
        ..TokenConfig::default()
    };
    let token = TokenIssuer::new(key.clone(), other_audience)
        .issue(1, Role::User, now())
        .token;
    assert_eq!(
        verifier.verify(&token, now()),
        Err(TokenError::WrongAudience)
    );

    for (audience, expected) in [
        (json!(["other", "pillivery-api"]), Ok(())),
        (json!(["other"]), Err(TokenError::WrongAudience)),
        (json!([]), Err(TokenError::WrongAudience)),
        (json!(1), Err(TokenError::WrongAudience)),
    ] {
        let mut claims = valid_claims();
        claims["aud"] = audience.clone();
        let result = verifier
            .verify(&sign_claims(&key, &claims), now())
            .map(|_| ());
        assert_eq!(result, expected, "aud {audience}");
    }
    let mut claims = valid_claims();
    claims["iss"] = json!(["pillivery"]);
    assert_eq!(
        verifier.verify(&sign_claims(&key, &claims), now()),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn every_claim_is_required_and_checked() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);
    assert!(
        verifier
            .verify(&sign_claims(&key, &valid_claims()), now())
            .is_ok()
    );

    for name in ["sub", "role", "jti", "iat", "exp", "iss", "aud"] {
        let mut claims = valid_claims();
        claims.as_object_mut().unwrap().remove(name);
        assert_eq!(
            verifier.verify(&sign_claims(&key, &claims), now()),
            Err(TokenError::MissingClaim(name)),
            "without {name}"
        );
    }

    let invalid = [
        ("sub", json!("0"), "sub"),
        ("sub", json!("-5"), "sub"),
        ("sub", json!("abc"), "sub"),
        ("sub", json!("042"), "sub"),
        ("sub", json!(42), "sub"),
        ("sub", json!("99999999999999999999"), "sub"),
        ("role", json!("user"), "role"),
        ("role", json!("SUPERUSER"), "role"),
        ("role", json!(["ADMIN"]), "role"),
        ("jti", json!(""), "jti"),
        ("jti", json!(17), "jti"),
        ("jti", json!("x".repeat(129)), "jti"),
        ("exp", json!("soon"), "exp"),
        ("exp", json!(NOW as f64 + 900.5), "exp"),
        ("iat", json!(null), "iat"),
    ];
    for (name, value, claim) in invalid {
        let mut claims = valid_claims();
        claims[name] = value.clone();
        assert_eq!(
            verifier.verify(&sign_claims(&key, &claims), now()),
            Err(TokenError::InvalidClaim(claim)),
            "{name} = {value}"
        );
    }
}

#[test]
fn malformed_tokens_are_refused_without_panicking() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);
    let real = TokenIssuer::new(key.clone(), TokenConfig::default())
        .issue(1, Role::User, now())
        .token;
    let header = real.split('.').next().unwrap();
    let huge = format!("{real}{}", "A".repeat(10_000));
    let cases = [
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "...".to_owned(),
        "a.b.c".to_owned(),
        format!("{real}.extra"),
        real.replacen('.', "", 1),
        format!("{header}.!!!.sig"),
        format!("{header}.{}.", URL_SAFE_NO_PAD.encode("not json")),
        format!("{}.e30.", URL_SAFE_NO_PAD.encode("[1,2]")),
        format!("{real}==="),
        huge,
        "빵.빵.빵".to_owned(),
    ];
    for token in cases {
        let refused = verifier.verify(&token, now()).unwrap_err();
        assert!(
            matches!(
                refused,
                TokenError::Malformed | TokenError::BadSignature | TokenError::WrongAlgorithm
            ),
            "{token:.40}: {refused:?}"
        );
        assert_eq!(refused.reason(), "INVALID_TOKEN");
    }
    // A signature that is not base64url.
    let bad_signature = format!("{}.{}.@@@@", header, real.split('.').nth(1).unwrap());
    assert_eq!(
        verifier.verify(&bad_signature, now()),
        Err(TokenError::Malformed)
    );
    // An extension we can't honour.
    let crit = json!({"alg": "EdDSA", "kid": key.kid(), "crit": ["exp"], "exp": 1});
    let token = format!("{}.{}.", b64(&crit), b64(&valid_claims()));
    assert_eq!(verifier.verify(&token, now()), Err(TokenError::Malformed));
}

#[test]
fn rotation_accepts_tokens_from_every_configured_key() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    assert_ne!(old.kid(), new.kid());
    let verifier = verifier_for(&[&new, &old]);
    for (key, user_id) in [(&old, 1), (&new, 2)] {
        let token = TokenIssuer::new(key.clone(), TokenConfig::default())
            .issue(user_id, Role::User, now())
            .token;
        assert_eq!(verifier.verify(&token, now()).unwrap().user_id, user_id);
    }
    // Retiring the old key retires its tokens.
    let token = TokenIssuer::new(old.clone(), TokenConfig::default())
        .issue(1, Role::User, now())
        .token;
    assert_eq!(
        verifier_for(&[&new]).verify(&token, now()),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn keys_sharing_a_kid_are_all_tried() {
    let first =
        SigningKey::from_pkcs8_pem(&SigningKey::generate().to_pkcs8_pem(), Some("k".into()))
            .unwrap();
    let second =
        SigningKey::from_pkcs8_pem(&SigningKey::generate().to_pkcs8_pem(), Some("k".into()))
            .unwrap();
    let verifier = verifier_for(&[&first, &second]);
    let token = TokenIssuer::new(second, TokenConfig::default())
        .issue(3, Role::User, now())
        .token;
    assert_eq!(verifier.verify(&token, now()).unwrap().user_id, 3);
}

#[test]
fn jwk_round_trip_verifies_the_same_token() {
    let key = SigningKey::generate();
    let jwk = key.verification_key().to_jwk();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["kid"], key.kid());
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(jwk["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(jwk.as_object().unwrap().len(), 6);

    let restored = VerificationKey::from_jwk(&jwk).unwrap();
    assert_eq!(restored, key.verification_key());
    assert_eq!(restored.kid(), key.kid());
    let token = TokenIssuer::new(key.clone(), TokenConfig::default())
        .issue(9, Role::User, now())
        .token;
    let verifier = TokenVerifier::new(vec![restored], TokenConfig::default());
    assert_eq!(verifier.verify(&token, now()).unwrap().user_id, 9);

    // Without kid, the key id is the thumbprint, which is also the generated key's default kid.
    let mut bare = jwk.clone();
    bare.as_object_mut()
        .unwrap()
        .retain(|name, _| ["kty", "crv", "x"].contains(&name.as_str()));
    assert_eq!(VerificationKey::from_jwk(&bare).unwrap().kid(), key.kid());
}

#[test]
fn bad_jwks_are_refused() {
    let jwk = SigningKey::generate().verification_key().to_jwk();
    let with = |name: &str, value: Value| {
        let mut changed = jwk.clone();
        changed[name] = value;
        changed
    };
    let cases = [
        json!("not an object"),
        with("kty", json!("RSA")),
        with("kty", json!("oct")),
        with("crv", json!("X25519")),
        with("crv", json!("P-256")),
        with("alg", json!("HS256")),
        with("use", json!("enc")),
        with("x", json!("AAAA")),
        with("x", json!("not base64!")),
        with("x", json!(12)),
        with("kid", json!("")),
        with("d", json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")),
    ];
    for case in cases {
        assert!(VerificationKey::from_jwk(&case).is_err(), "{case}");
    }
}

#[test]
fn jwks_lists_every_key() {
    let first = SigningKey::generate().verification_key();
    let second = SigningKey::generate().verification_key();
    let document = jwks(&[first.clone(), second.clone()]);
    assert_eq!(document, json!({"keys": [first.to_jwk(), second.to_jwk()]}));
    assert_eq!(jwks(&[]), json!({"keys": []}));
}

#[test]
fn pem_round_trip_keeps_the_key() {
    let key = SigningKey::generate();
    let pem = key.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
    let restored = SigningKey::from_pkcs8_pem(&pem, None).unwrap();
    assert_eq!(restored.kid(), key.kid());
    assert_eq!(restored.verification_key(), key.verification_key());
    assert_eq!(restored.to_pkcs8_pem(), pem);

    // Tokens from the restored key verify with the original's public key.
    let token = TokenIssuer::new(restored, TokenConfig::default())
        .issue(5, Role::User, now())
        .token;
    assert!(verifier_for(&[&key]).verify(&token, now()).is_ok());

    // A kid given explicitly wins; a PEM squeezed onto one line with literal \n still reads.
    let named = SigningKey::from_pkcs8_pem(&pem, Some("2026-11".to_owned())).unwrap();
    assert_eq!(named.kid(), "2026-11");
    assert_eq!(named.verification_key().to_jwk()["kid"], "2026-11");
    let one_line = pem.trim_end().replace('\n', "\\n");
    assert_eq!(
        SigningKey::from_pkcs8_pem(&one_line, None).unwrap().kid(),
        key.kid()
    );
}

#[test]
fn openssl_style_pem_is_accepted() {
    // RFC 8410 §10.3's example Ed25519 private key, as `openssl genpkey` writes one.
    let pem = "-----BEGIN PRIVATE KEY-----\n\
               MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
               -----END PRIVATE KEY-----\n";
    let key = SigningKey::from_pkcs8_pem(pem, None).unwrap();
    // RFC 8410 §10.1's public key: 19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1
    let x = key.verification_key().to_jwk()["x"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(x).unwrap(),
        hex("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1")
    );
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn garbage_pem_is_an_error_not_a_panic() {
    let cases = [
        String::new(),
        "garbage".to_owned(),
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n".to_owned(),
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n".to_owned(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp\n".to_owned(),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            .to_owned(),
        // An EC P-256 PKCS#8 key: right armour, wrong algorithm.
        "-----BEGIN PRIVATE KEY-----\n\
         MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2\n\
         OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r\n\
         1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G\n\
         -----END PRIVATE KEY-----\n"
            .to_owned(),
        "ПРИВЕТ ☃".to_owned(),
    ];
    for pem in cases {
        assert!(SigningKey::from_pkcs8_pem(&pem, None).is_err(), "{pem:?}");
    }
    let pem = SigningKey::generate().to_pkcs8_pem();
    assert!(SigningKey::from_pkcs8_pem(&pem, Some(String::new())).is_err());
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn load_or_generate_creates_the_key_once() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("keys").join("jwt-signing.pem");

    let created = SigningKey::load_or_generate(&path).unwrap();
    assert!(path.exists());
    #[cfg(unix)]
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        created.to_pkcs8_pem()
    );

    let loaded = SigningKey::load_or_generate(&path).unwrap();
    assert_eq!(loaded.kid(), created.kid());
    assert_eq!(loaded.verification_key(), created.verification_key());
    // Nothing but the key file is left behind.
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("jwt-signing.pem")]);

    let token = TokenIssuer::new(created, TokenConfig::default())
        .issue(1, Role::User, now())
        .token;
    assert!(verifier_for(&[&loaded]).verify(&token, now()).is_ok());
}

#[test]
fn load_or_generate_refuses_a_damaged_file_instead_of_replacing_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jwt-signing.pem");
    std::fs::write(&path, "half a key").unwrap();
    assert!(SigningKey::load_or_generate(&path).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "half a key");
}

#[test]
fn bearer_is_read_from_http_headers() {
    let read = |values: &[&[u8]]| {
        let mut headers = http::HeaderMap::new();
        for value in values {
            headers.append(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        bearer_from_headers(&headers).map(str::to_owned)
    };
    assert_eq!(
        read(&[b"Bearer abc.def.ghi"]),
        Some("abc.def.ghi".to_owned())
    );
    assert_eq!(read(&[b"bearer abc"]), Some("abc".to_owned()));
    assert_eq!(read(&[b"Bearer   abc"]), Some("abc".to_owned()));
    assert_eq!(read(&[]), None);
    assert_eq!(read(&[b"Bearer"]), None);
    assert_eq!(read(&[b"Bearer "]), None);
    assert_eq!(read(&[b"Basic dXNlcjpwYXNz"]), None);
    assert_eq!(read(&[b"Bearer abc def"]), None);
    assert_eq!(read(&["Bearer töken".as_bytes()]), None);
    assert_eq!(read(&[b"Bearer \xff\xfe"]), None);
    // Two authorization headers: ambiguous, so none.
    assert_eq!(read(&[b"Bearer a", b"Bearer b"]), None);
}

#[test]
fn bearer_is_read_from_grpc_metadata() {
    let read = |value: &str| {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        bearer_from_metadata(&metadata).map(str::to_owned)
    };
    assert_eq!(read("Bearer abc.def.ghi"), Some("abc.def.ghi".to_owned()));
    assert_eq!(read("BEARER abc"), Some("abc".to_owned()));
    assert_eq!(read("Bearer"), None);
    assert_eq!(read("Bearer  "), None);
    assert_eq!(read("Token abc"), None);
    assert_eq!(
        bearer_from_metadata(&tonic::metadata::MetadataMap::new()),
        None
    );
}

#[test]
fn caller_from_request_needs_a_valid_token() {
    let key = SigningKey::generate();
    let verifier = verifier_for(&[&key]);
    let issuer = TokenIssuer::new(key.clone(), TokenConfig::default());

    let mut request = tonic::Request::new(());
    let issued = issuer.issue(11, Role::User, Utc::now());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", issued.token).parse().unwrap(),
    );
    let caller = caller_from_request(&verifier, &request).unwrap();
    assert_eq!(caller.user_id, 11);
    assert_eq!(caller.token_id, issued.token_id);

    let status = caller_from_request(&verifier, &tonic::Request::new(())).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let mut request = tonic::Request::new(());
    let stale = issuer.issue(11, Role::User, Utc::now() - chrono::Duration::hours(1));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", stale.token).parse().unwrap(),
    );
    let status = caller_from_request(&verifier, &request).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let decoded = pillivery_platform::error::ApiError::from_status(&status).unwrap();
    assert_eq!(decoded.reason, "TOKEN_EXPIRED");
    assert!(!status.message().contains(&stale.token));
}

#[test]
fn token_config_reads_with_defaults_and_refuses_unknown_fields() {
    let config: TokenConfig = serde_json::from_value(json!({"access_ttl_seconds": 60})).unwrap();
    assert_eq!(
        config,
        TokenConfig {
            access_ttl_seconds: 60,
            ..TokenConfig::default()
        }
    );
    assert_eq!(TokenConfig::default().issuer, "pillivery");
    assert_eq!(TokenConfig::default().audience, "pillivery-api");
    assert_eq!(TokenConfig::default().leeway_seconds, 5);
    assert!(serde_json::from_value::<TokenConfig>(json!({"ttl": 60})).is_err());

    let key = SigningKey::generate();
    let issued = TokenIssuer::new(key.clone(), config).issue(1, Role::User, now());
    assert_eq!(issued.expires_in_seconds, 60);
    assert_eq!(issued.expires_at, seconds_after(60));
}

#[test]
fn role_spells_like_the_claim() {
    assert_eq!(Role::User.as_str(), "USER");
    assert_eq!(Role::Admin.to_string(), "ADMIN");
    assert_eq!("ADMIN".parse::<Role>(), Ok(Role::Admin));
    assert!("admin".parse::<Role>().is_err());
    assert_eq!(serde_json::to_value(Role::User).unwrap(), json!("USER"));
}

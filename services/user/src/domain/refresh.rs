//! Refresh tokens: opaque secrets in families, rotated on every use.
//!
//! A refresh token is 256 random bits, base64url without padding (43 characters). Only its
//! SHA-256 (hex) is stored, so a copy of the database yields no usable token. Each login starts
//! a *family*; every refresh spends the presented token (ACTIVE → ROTATED) and issues its
//! successor in the same family. A ROTATED token presented again means two parties hold the
//! same chain — one of them stole it — so the whole family is revoked and both must log in
//! again (RFC 9700 §4.14.2). Logout and withdrawal revoke families too (ACTIVE → REVOKED).
//!
//! Each successor lives the full refresh lifetime from its issue (a sliding window): a user who
//! comes back at least every 14 days stays logged in.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// Bytes of randomness in a refresh token.
pub const REFRESH_TOKEN_BYTES: usize = 32;

/// Where a refresh token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshStatus {
    /// Can be spent once.
    Active,
    /// Spent by a refresh; presenting it again is reuse.
    Rotated,
    /// Ended by logout, withdrawal or reuse detection.
    Revoked,
}

impl RefreshStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshStatus::Active => "ACTIVE",
            RefreshStatus::Rotated => "ROTATED",
            RefreshStatus::Revoked => "REVOKED",
        }
    }

    pub fn parse(value: &str) -> Option<RefreshStatus> {
        match value {
            "ACTIVE" => Some(RefreshStatus::Active),
            "ROTATED" => Some(RefreshStatus::Rotated),
            "REVOKED" => Some(RefreshStatus::Revoked),
            _ => None,
        }
    }
}

/// A freshly minted refresh token: the secret for the client, the hash for the database.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub secret: String,
    pub hash: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("secret", &"[redacted]")
            .field("hash", &self.hash)
            .finish()
    }
}

impl RefreshToken {
    /// 256 bits from the operating system's generator.
    pub fn generate() -> RefreshToken {
        let bytes: [u8; REFRESH_TOKEN_BYTES] = rand::random();
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_refresh_token(&secret);
        RefreshToken { secret, hash }
    }
}

/// The stored form of a presented token: lower-case hex SHA-256 of its text. A token of the
/// wrong shape still hashes (and then matches nothing), so no lookup path depends on its shape.
pub fn hash_refresh_token(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What to do with a presented refresh token that did not rotate (the store's conditional
/// update found it no longer ACTIVE, or expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// ACTIVE and unexpired: spend it and issue the successor.
    Rotate,
    /// Spent before and presented again: revoke the family.
    Reused,
    /// Unknown, expired or revoked: refuse, change nothing.
    Invalid,
}

/// Judges a stored token presented at `now`. An expired token is simply invalid, even a
/// rotated one: its chain can no longer be extended with it, so there is nothing to protect.
pub fn judge_refresh(
    status: RefreshStatus,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> RefreshVerdict {
    if now >= expires_at {
        return RefreshVerdict::Invalid;
    }
    match status {
        RefreshStatus::Active => RefreshVerdict::Rotate,
        RefreshStatus::Rotated => RefreshVerdict::Reused,
        RefreshStatus::Revoked => RefreshVerdict::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn tokens_are_256_bit_base64url_and_stored_as_sha256() {
        let token = RefreshToken::generate();
        assert_eq!(token.secret.len(), 43);
        assert!(
            token
                .secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(token.hash.len(), 64);
        assert_eq!(token.hash, hash_refresh_token(&token.secret));
        assert_ne!(RefreshToken::generate().secret, token.secret);
        assert!(!format!("{token:?}").contains(&token.secret));
        assert_eq!(
            hash_refresh_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verdicts() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let later = now + chrono::Duration::days(1);
        let table = [
            (RefreshStatus::Active, later, RefreshVerdict::Rotate),
            (RefreshStatus::Rotated, later, RefreshVerdict::Reused),
            (RefreshStatus::Revoked, later, RefreshVerdict::Invalid),
            (RefreshStatus::Active, now, RefreshVerdict::Invalid),
            (RefreshStatus::Rotated, now, RefreshVerdict::Invalid),
            (RefreshStatus::Revoked, now, RefreshVerdict::Invalid),
        ];
        for (status, expires_at, verdict) in table {
            assert_eq!(
                judge_refresh(status, expires_at, now),
                verdict,
                "{status:?}"
            );
        }
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            RefreshStatus::Active,
            RefreshStatus::Rotated,
            RefreshStatus::Revoked,
        ] {
            assert_eq!(RefreshStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RefreshStatus::parse("active"), None);
    }
}

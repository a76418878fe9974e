//! Approvals: what a challenge obtained through the service approves, sealed with a MAC and
//! carried in the `/auth/action/init` answer (`dfnsSignerApproval`), so `/v1/sign` signs only
//! challenges whose request the service saw — on any instance that holds the same approval key,
//! with no shared database.
//!
//! The token is `base64url(JSON record) "." base64url(HMAC-SHA256)`. The MAC covers the record
//! and the challenge and its identifier as Dfns issued them, so neither can be swapped for
//! another: Dfns binds the challenge to the request it was issued for, and the MAC binds it
//! to the request the service approved.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::protocol::{b64url, b64url_decode};

/// Shortest approval key accepted (bytes of its text).
pub const MIN_APPROVAL_KEY_LEN: usize = 32;
const DOMAIN: &[u8] = b"dfns-signer approval v1\0";

/// What one challenge approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The client that asked, when it named itself at init (the TypeScript SDK cannot send a
    /// header; `/v1/sign` then checks the policy of the client that asks to sign).
    #[serde(rename = "c")]
    pub(crate) client: Option<String>,
    #[serde(rename = "m")]
    pub(crate) method: String,
    #[serde(rename = "p")]
    pub(crate) path: String,
    /// The request body, as the user action payload (the policy's body constraints read it).
    #[serde(rename = "b")]
    pub(crate) payload: String,
    #[serde(rename = "k")]
    pub(crate) server_kind: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub(crate) expires: u64,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Absent: the challenge did not come through the service.
    Missing,
    /// Not a token, or its MAC does not hold (another key, or altered).
    Invalid,
    /// Older than the approval lifetime.
    Expired,
}

/// The HMAC key that seals approvals. Not `Debug`.
pub(crate) struct ApprovalKey {
    key: hmac::Key,
    /// Whether it was drawn at start-up (this instance only) rather than configured.
    pub(crate) ephemeral: bool,
}

impl ApprovalKey {
    /// A key from configured bytes (at least [`MIN_APPROVAL_KEY_LEN`]).
    pub(crate) fn from_bytes(bytes: &[u8]) -> ApprovalKey {
        ApprovalKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            ephemeral: false,
        }
    }

    /// A random key: approvals then hold on this instance only.
    pub(crate) fn random() -> ApprovalKey {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .expect("the system random source failed");
        ApprovalKey {
            ephemeral: true,
            ..ApprovalKey::from_bytes(bytes.as_ref())
        }
    }

    /// Seals `record` to one challenge.
    pub(crate) fn seal(
        &self,
        record: &Record,
        challenge_identifier: &str,
        challenge: &str,
    ) -> String {
        let json = serde_json::to_vec(record).expect("a record always serialises");
        let record_b64 = b64url(&json);
        let tag = hmac::sign(
            &self.key,
            &signed_bytes(&record_b64, challenge_identifier, challenge),
        );
        format!("{record_b64}.{}", b64url(tag.as_ref()))
    }

    /// Opens a token for one challenge at time `now`.
    pub(crate) fn open(
        &self,
        token: Option<&str>,
        challenge_identifier: &str,
        challenge: &str,
        now: SystemTime,
    ) -> Result<Record, Refusal> {
        let token = token.ok_or(Refusal::Missing)?;
        let (record_b64, tag_b64) = token.split_once('.').ok_or(Refusal::Invalid)?;
        let tag = b64url_decode(tag_b64).map_err(|_| Refusal::Invalid)?;
        // Constant time: ring compares the tags.
        hmac::verify(
            &self.key,
            &signed_bytes(record_b64, challenge_identifier, challenge),
            &tag,
        )
        .map_err(|_| Refusal::Invalid)?;
        let json = b64url_decode(record_b64).map_err(|_| Refusal::Invalid)?;
        let record: Record = serde_json::from_slice(&json).map_err(|_| Refusal::Invalid)?;
        if unix_seconds(now) >= record.expires {
            return Err(Refusal::Expired);
        }
        Ok(record)
    }
}

fn signed_bytes(record_b64: &str, challenge_identifier: &str, challenge: &str) -> Vec<u8> {
    [
        DOMAIN,
        record_b64.as_bytes(),
        b"\0",
        challenge_identifier.as_bytes(),
        b"\0",
        challenge.as_bytes(),
    ]
    .concat()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires: u64) -> Record {
        Record {
            client: Some("payments".into()),
            method: "POST".into(),
            path: "/wallets".into(),
            payload: r#"{"network":"Bitcoin"}"#.into(),
            server_kind: Some("Api".into()),
            expires,
        }
    }

    #[test]
    fn a_sealed_record_opens_for_its_challenge_only_and_until_it_expires() {
        let key = ApprovalKey::from_bytes(&[7u8; 32]);
        let now = SystemTime::now();
        let exp = unix_seconds(now) + 300;
        let token = key.seal(&record(exp), "ci-1", "chal-1");
        assert_eq!(
            key.open(Some(&token), "ci-1", "chal-1", now).unwrap(),
            record(exp)
        );
        // Another challenge, another identifier, another key, an altered record, no token.
        assert_eq!(
            key.open(Some(&token), "ci-1", "chal-2", now),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            key.open(Some(&token), "ci-2", "chal-1", now),
            Err(Refusal::Invalid)
        );
        let other = ApprovalKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            other.open(Some(&token), "ci-1", "chal-1", now),
            Err(Refusal::Invalid)
        );
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            b64url(
                &serde_json::to_vec(&Record {
                    path: "/wallets/import".into(),
                    ..record(exp)
                })
                .unwrap()
            )
        );
        assert_eq!(
            key.open(Some(&forged), "ci-1", "chal-1", now),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            key.open(Some("garbage"), "ci-1", "chal-1", now),
            Err(Refusal::Invalid)
        );
        assert_eq!(key.open(None, "ci-1", "chal-1", now), Err(Refusal::Missing));
        // Expiry.
        let later = now + Duration::from_secs(301);
        assert_eq!(
            key.open(Some(&token), "ci-1", "chal-1", later),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn random_keys_differ_so_an_instance_without_a_configured_key_trusts_only_itself() {
        let a = ApprovalKey::random();
        let b = ApprovalKey::random();
        assert!(a.ephemeral);
        let exp = unix_seconds(SystemTime::now()) + 60;
        let token = a.seal(&record(exp), "ci", "ch");
        assert!(a.open(Some(&token), "ci", "ch", SystemTime::now()).is_ok());
        assert_eq!(
            b.open(Some(&token), "ci", "ch", SystemTime::now()),
            Err(Refusal::Invalid)
        );
    }
}

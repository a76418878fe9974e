//! Checking the webhooks Dfns sends: is this event really from Dfns, and is it fresh?
//!
//! Dfns signs each delivery with the secret it returned once, when the webhook was created:
//! the `X-DFNS-WEBHOOK-SIGNATURE` header is `sha256=` followed by the lowercase hex
//! HMAC-SHA256 of the raw request body under that secret, and the body's `timestampSent` is the
//! Unix time (seconds) of sending. [`verify`] checks both, in constant time, before anything
//! of the body is trusted; no official SDK has such a helper.
//!
//! ```
//! use dfns_signer::webhooks::{verify, WebhookError};
//! # fn sign(secret: &str, body: &[u8]) -> String {
//! #     let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
//! #     format!("sha256={}", hex::encode(ring::hmac::sign(&key, body).as_ref()))
//! # }
//! let secret = "whsec_from_webhook_creation";
//! let body = br#"{"id":"we-1","kind":"wallet.created","data":{},"timestampSent":1700000000}"#;
//! let header = sign(secret, body); // what Dfns puts in X-DFNS-WEBHOOK-SIGNATURE
//!
//! let event = verify(body, &header, secret, 1_700_000_030)?;
//! assert_eq!(event.kind, "wallet.created");
//! // One changed byte, or the same delivery an hour later, is refused.
//! assert!(matches!(verify(b"{}", &header, secret, 1_700_000_030), Err(WebhookError::SignatureMismatch)));
//! assert!(matches!(verify(body, &header, secret, 1_700_003_600), Err(WebhookError::Stale { .. })));
//! # Ok::<(), WebhookError>(())
//! ```

use serde_json::Value;

/// How far `timestampSent` may be from the receiver's clock, either way: Dfns' documented
/// tolerance (and Stripe's, whose scheme it follows) of five minutes.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The header Dfns signs deliveries in.
pub const SIGNATURE_HEADER: &str = "X-DFNS-WEBHOOK-SIGNATURE";

/// A verified webhook event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// The event id (`id`), to deduplicate redeliveries.
    pub id: String,
    /// What happened (`kind`), e.g. `wallet.created`.
    pub kind: String,
    /// `timestampSent`, Unix seconds.
    pub timestamp_sent: u64,
    /// The whole body, as sent.
    pub body: Value,
}

/// Why a delivery was refused. Nothing of the body is quoted: it is unauthenticated input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature header is not `sha256=<64 hex digits>`.
    #[error(
        "the {SIGNATURE_HEADER} header is not `sha256=<hex HMAC-SHA256>`; pass the header's \
         value exactly as received"
    )]
    MalformedHeader,
    /// The HMAC does not match: another secret, or a body changed on the way.
    #[error(
        "the webhook signature does not match the body: the body was changed, or the secret is \
         not this webhook's (use the secret returned when the webhook was created, and the raw \
         body bytes, before any JSON parsing)"
    )]
    SignatureMismatch,
    /// The signed body is not a JSON object with `id`, `kind` and `timestampSent`.
    #[error(
        "the signed body is not a Dfns webhook event (a JSON object with `id`, `kind` and an \
         integer `timestampSent`): {0}"
    )]
    NotAnEvent(&'static str),
    /// `timestampSent` is further from now than the tolerance: a replay, or a wrong clock.
    #[error(
        "the webhook was sent {age_secs} s away from this machine's clock (tolerance \
         {tolerance_secs} s): refuse it as a possible replay, or check this machine's clock"
    )]
    Stale {
        /// `|now - timestampSent|`, in seconds.
        age_secs: u64,
        /// The tolerance it exceeded.
        tolerance_secs: u64,
    },
}

/// Verifies a delivery with the default five-minute tolerance; see [`verify_with_tolerance`].
pub fn verify(
    body: &[u8],
    signature_header: &str,
    secret: &str,
    now_unix_secs: u64,
) -> Result<WebhookEvent, WebhookError> {
    verify_with_tolerance(
        body,
        signature_header,
        secret,
        now_unix_secs,
        DEFAULT_TOLERANCE_SECS,
    )
}

/// Verifies that `body` (the raw request body) was signed with `secret` as
/// `signature_header` says, then that its `timestampSent` is within `tolerance_secs` of
/// `now_unix_secs`. The HMAC is checked first and in constant time; the body is parsed only
/// once it is authentic.
pub fn verify_with_tolerance(
    body: &[u8],
    signature_header: &str,
    secret: &str,
    now_unix_secs: u64,
    tolerance_secs: u64,
) -> Result<WebhookEvent, WebhookError> {
    let claimed = signature_header
        .trim()
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(WebhookError::MalformedHeader)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &claimed).map_err(|_| WebhookError::SignatureMismatch)?;

    let value: Value =
        serde_json::from_slice(body).map_err(|_| WebhookError::NotAnEvent("not JSON"))?;
    let field = |name: &'static str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(WebhookError::NotAnEvent(name))
    };
    let (id, kind) = (field("id")?, field("kind")?);
    let timestamp_sent = value
        .get("timestampSent")
        .and_then(Value::as_u64)
        .ok_or(WebhookError::NotAnEvent("timestampSent"))?;
    let age_secs = now_unix_secs.abs_diff(timestamp_sent);
    if age_secs > tolerance_secs {
        return Err(WebhookError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    Ok(WebhookEvent {
        id,
        kind,
        timestamp_sent,
        body: value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const BODY: &[u8] =
        br#"{"id":"we-1","kind":"wallet.created","data":{"walletId":"wa-1"},"timestampSent":1000}"#;

    /// The header for `body`, computed with an HMAC written out from RFC 2104 (SHA-256, 64-byte
    /// blocks) rather than ring, so the test does not trust the code it checks.
    fn header(secret: &str, body: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let mut key = [0u8; 64];
        key[..secret.len()].copy_from_slice(secret.as_bytes());
        let pad = |byte: u8| key.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(body)
            .finalize();
        let outer = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        format!("sha256={}", hex::encode(outer))
    }

    #[test]
    fn an_authentic_fresh_event_verifies_and_is_parsed() {
        let event = verify(BODY, &header(SECRET, BODY), SECRET, 1000 + 299).unwrap();
        assert_eq!(
            (event.id.as_str(), event.kind.as_str()),
            ("we-1", "wallet.created")
        );
        assert_eq!(event.timestamp_sent, 1000);
        assert_eq!(event.body["data"]["walletId"], "wa-1");
        // A clock a little behind the sender is fine too.
        assert!(verify(BODY, &header(SECRET, BODY), SECRET, 1000 - 299).is_ok());
    }

    #[test]
    fn every_changed_byte_another_secret_or_a_bad_header_is_refused() {
        let good = header(SECRET, BODY);
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 0x01;
            assert_eq!(
                verify(&body, &good, SECRET, 1000),
                Err(WebhookError::SignatureMismatch),
                "byte {i}"
            );
        }
        assert_eq!(
            verify(BODY, &good, "whsec_other", 1000),
            Err(WebhookError::SignatureMismatch)
        );
        for bad in [
            "",
            "sha256=",
            "sha1=00",
            &good[7..],
            &good.replace("sha256=", "sha512="),
        ] {
            assert_eq!(
                verify(BODY, bad, SECRET, 1000),
                Err(WebhookError::MalformedHeader),
                "{bad}"
            );
        }
    }

    #[test]
    fn old_and_future_events_are_refused_as_replays() {
        let h = header(SECRET, BODY);
        assert_eq!(
            verify(BODY, &h, SECRET, 1000 + 301),
            Err(WebhookError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            verify(BODY, &h, SECRET, 1000 - 301),
            Err(WebhookError::Stale { age_secs: 301, .. })
        ));
        assert!(verify_with_tolerance(BODY, &h, SECRET, 1000 + 301, 600).is_ok());
    }

    #[test]
    fn an_authentic_body_that_is_no_event_is_refused_without_quoting_it() {
        let body = br#"{"id":"we-1","kind":"x","timestampSent":"soon","secret":"s3cr3t"}"#;
        let err = verify(body, &header(SECRET, body), SECRET, 1000).unwrap_err();
        assert_eq!(err, WebhookError::NotAnEvent("timestampSent"));
        assert!(!err.to_string().contains("s3cr3t"));
    }
}

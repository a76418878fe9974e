//! Retry policies: a hook around the whole user-action flow.
//!
//! The client asks the policy after each failed attempt whether to go again and after how long.
//! Every new attempt starts from `/auth/action/init`, so a retried request never reuses a
//! challenge or a user action token. Device errors (a wrong PIN above all) are never retried:
//! another try could lock the device.
//!
//! What is retried when, in one table: [`RetryPolicy`].

use std::time::Duration;

use crate::error::{ClientError, Error};
use crate::protocol::{Method, Payload};

/// Whether a request that failed *after* it was handed to the transport may be sent again
/// without risk of running twice.
pub(crate) fn replay_is_safe(
    method: Method,
    payload: &Payload,
    opted_in: bool,
    error: &Error,
) -> bool {
    if method == Method::Get || opted_in {
        return true;
    }
    match error {
        // Never written to the wire: the server cannot have acted.
        Error::Client(ClientError::Transport {
            never_sent: true, ..
        }) => true,
        // A rate limiter refuses before the endpoint runs (RFC 6585: the request was not
        // processed).
        Error::Client(ClientError::Api(api)) if api.status == 429 => true,
        // Dfns deduplicates requests by `externalId`: a second one returns the first's result.
        _ => payload.external_id().is_some(),
    }
}

/// Decides whether a failed request is tried again.
///
/// Before it asks the policy, the client checks that sending again cannot repeat a side effect
/// (see the table below): a 502, a 504, a timeout or a connection dropped after the request was
/// written may come *after* the server acted.
///
/// | what failed | `GET` | other methods | other methods with `externalId` in the body, or [`CallOptions::retry_side_effects`](super::CallOptions) |
/// |---|---|---|---|
/// | `/auth/action/init` or `/auth/action` (429, 502, 503, 504, refused connection) | retried | retried | retried |
/// | connection refused (the request was never written) | retried | retried | retried |
/// | 429 on the request (the rate limiter answers before the endpoint runs) | retried | retried | retried |
/// | 502, 503, 504 on the request | retried | **not retried** | retried |
/// | timeout, connection dropped after the request was written | not retried (policy) | **not retried** | not retried (policy) |
/// | 500, other 4xx/5xx, 202 (policy pending), malformed answer | not retried | not retried | not retried |
/// | device, PIN, touch, sign timeout | not retried | not retried | not retried |
///
/// "Retried" means [`Backoff`] retries it (within `max_attempts`, honouring `Retry-After`);
/// [`NoRetry`], the default, retries nothing. A custom [`RetryPolicy`] is asked only where this
/// table does not say "not retried" in bold.
pub trait RetryPolicy: Send + Sync {
    /// After failed attempt number `attempt` (1-based) with `error`: `Some(delay)` to try again
    /// after `delay`, `None` to give up and return the error.
    fn retry_after(&self, attempt: u32, error: &Error) -> Option<Duration>;
}

/// Never retries (the default, like every official SDK).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetry;

impl RetryPolicy for NoRetry {
    fn retry_after(&self, _attempt: u32, _error: &Error) -> Option<Duration> {
        None
    }
}

/// Exponential backoff on answers that say "try later" (429, 502, 503, 504) and on connections
/// that were refused before the request left; honours `Retry-After`. Other errors — 500 (the
/// request may have run), 4xx, device and PIN errors — are returned at once. A mutating call is
/// retried after a 502/503/504 only when its body carries an `externalId` (Dfns deduplicates it)
/// or the caller opted in (see the table on [`RetryPolicy`]).
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Upper bound for any delay, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy for Backoff {
    fn retry_after(&self, attempt: u32, error: &Error) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16));
        let delay = match error {
            Error::Client(ClientError::Api(api)) if matches!(api.status, 429 | 502 | 503 | 504) => {
                api.retry_after.unwrap_or(exponential)
            }
            Error::Client(ClientError::Transport {
                never_sent: true, ..
            }) => exponential,
            _ => return None,
        };
        Some(delay.min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ApiError, BackendError};

    #[test]
    fn side_effects_are_replayed_only_when_provably_safe() {
        let post = Method::Post;
        let body = Payload::json(&serde_json::json!({"network": "EthereumSepolia"})).unwrap();
        let with_id = body.clone().with_external_id("order-42").unwrap();
        let lost = ClientError::Transport {
            url: "u".into(),
            reason: "connection reset".into(),
            never_sent: false,
        }
        .into();
        let refused = ClientError::Transport {
            url: "u".into(),
            reason: "connection refused".into(),
            never_sent: true,
        }
        .into();
        for status in [500, 502, 503, 504] {
            assert!(
                !replay_is_safe(post, &body, false, &api(status, None)),
                "{status}"
            );
            assert!(
                replay_is_safe(post, &with_id, false, &api(status, None)),
                "{status}"
            );
            assert!(
                replay_is_safe(post, &body, true, &api(status, None)),
                "{status}"
            );
            assert!(replay_is_safe(
                Method::Get,
                &Payload::empty(),
                false,
                &api(status, None)
            ));
        }
        assert!(!replay_is_safe(post, &body, false, &lost));
        assert!(!replay_is_safe(
            Method::Delete,
            &Payload::empty(),
            false,
            &lost
        ));
        assert!(replay_is_safe(post, &body, false, &refused));
        assert!(replay_is_safe(post, &body, false, &api(429, None)));
        // An empty or non-string externalId deduplicates nothing.
        for raw in [
            r#"{"externalId":""}"#,
            r#"{"externalId":7}"#,
            r#"{"a":{"externalId":"x"}}"#,
        ] {
            let p = Payload::raw_json(raw).unwrap();
            assert!(!replay_is_safe(post, &p, false, &api(502, None)), "{raw}");
        }
    }

    fn api(status: u16, retry_after: Option<u64>) -> Error {
        ApiError {
            status,
            message: "m".into(),
            id: None,
            details: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
        .into()
    }

    #[test]
    fn backoff_retries_only_what_is_safe() {
        let p = Backoff::default();
        assert_eq!(
            p.retry_after(1, &api(429, Some(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.retry_after(1, &api(503, None)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            p.retry_after(2, &api(502, None)),
            Some(Duration::from_millis(400))
        );
        assert_eq!(
            p.retry_after(3, &api(502, None)),
            None,
            "attempts are bounded"
        );
        assert_eq!(
            p.retry_after(1, &api(500, None)),
            None,
            "a 500 may have run"
        );
        assert_eq!(p.retry_after(1, &api(400, None)), None);
        let pin: Error = BackendError::PinIncorrect {
            device: "d".into(),
            tries_left: Some(2),
        }
        .into();
        assert_eq!(p.retry_after(1, &pin), None, "a wrong PIN is never retried");
        assert_eq!(
            p.retry_after(1, &api(429, Some(3600))),
            Some(Duration::from_secs(10)),
            "capped"
        );
        assert_eq!(NoRetry.retry_after(1, &api(429, None)), None);
    }
}

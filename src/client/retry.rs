//! Retry policies: a hook around the whole user-action flow.
//!
//! The client asks the policy after each failed attempt whether to go again and after how long.
//! Every new attempt starts from `/auth/action/init`, so a retried request never reuses a
//! challenge or a user action token. Device errors (a wrong PIN above all) are never retried:
//! another try could lock the device.

use std::time::Duration;

use crate::error::{ClientError, Error};

/// Decides whether a failed request is tried again.
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
/// request may have run), 4xx, device and PIN errors — are returned at once. For mutating calls,
/// put an `externalId` in the body so that Dfns deduplicates a request that did run.
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

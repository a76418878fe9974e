//! Fault injection: the misbehaviour a real network and a real Dfns show now and then, on
//! demand, so clients can be tested against it (retries, backoff, 202 handling, lost answers).
//!
//! Faults strike after the auth token and the user action are checked (a user action presented
//! with a faulted request is spent, as it may well be on the real service). Most strike before
//! the endpoint runs, so the faulted request changes nothing; the `*_after` faults strike after
//! it ran — its side effect happened, only the answer is lost — which is what a gateway timeout
//! or a connection cut on the way back looks like to a client, and why a client must not simply
//! send a mutating request again.

use std::time::Duration;

use super::endpoints::rule_matches;

/// What to break, and how often. `Default` breaks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added to every request before it is answered.
    pub latency: Duration,
    /// Share of requests (0.0–1.0) answered `429 Too Many Requests` with a `Retry-After` header.
    pub rate_429: f64,
    /// The `Retry-After` value sent with a 429, in seconds.
    pub retry_after_secs: u64,
    /// Share of requests answered `500` with a Dfns error body.
    pub rate_500: f64,
    /// Share of requests answered `502` with a flat `{"message"}` body, as a gateway does.
    pub rate_502: f64,
    /// Share of requests answered `504` by a gateway before the endpoint runs.
    pub rate_504: f64,
    /// Share of requests whose TCP connection is closed without an answer.
    pub drop_rate: f64,
    /// Share of requests that run (their side effect happens) and are then answered `504`, as
    /// by a gateway that gave up waiting.
    pub rate_504_after: f64,
    /// Share of requests that run and whose connection is then closed without an answer.
    pub drop_after_rate: f64,
    /// `"METHOD /path"` rules (path templates allowed: `POST /wallets/{id}/signatures`) whose
    /// requests get `202 Accepted` with a pending policy approval instead of running.
    pub policy_pending_paths: Vec<String>,
    /// When not empty, the random faults above strike only requests matching one of these
    /// `"METHOD /path"` rules; latency and policy rules are unaffected.
    pub only_paths: Vec<String>,
    /// Seed for the fault dice, for reproducible runs; `None` draws one from the OS.
    pub seed: Option<u64>,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Drop,
    TooManyRequests {
        retry_after_secs: u64,
    },
    InternalError,
    BadGateway,
    GatewayTimeout,
    /// The endpoint runs, then the answer is replaced by a 504.
    GatewayTimeoutAfter,
    /// The endpoint runs, then the connection is closed without an answer.
    DropAfter,
    PolicyPending,
}

/// The faults in force and their dice.
#[derive(Debug)]
pub(crate) struct FaultState {
    pub(crate) faults: Faults,
    rng: SplitMix64,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        let seed = faults.seed.unwrap_or_else(super::util::random_u64);
        FaultState {
            faults,
            rng: SplitMix64(seed),
        }
    }

    /// Rolls the dice for one request.
    pub(crate) fn decide(&mut self, method: &str, path: &str) -> Fault {
        let f = &self.faults;
        let targeted =
            f.only_paths.is_empty() || f.only_paths.iter().any(|r| rule_matches(r, method, path));
        if targeted {
            let roll = self.rng.next_f64();
            let mut edge = 0.0;
            for (rate, fault) in [
                (f.drop_rate, Fault::Drop),
                (
                    f.rate_429,
                    Fault::TooManyRequests {
                        retry_after_secs: f.retry_after_secs,
                    },
                ),
                (f.rate_500, Fault::InternalError),
                (f.rate_502, Fault::BadGateway),
                (f.rate_504, Fault::GatewayTimeout),
                (f.rate_504_after, Fault::GatewayTimeoutAfter),
                (f.drop_after_rate, Fault::DropAfter),
            ] {
                edge += rate.clamp(0.0, 1.0);
                if roll < edge {
                    return fault;
                }
            }
        }
        if f.policy_pending_paths
            .iter()
            .any(|r| rule_matches(r, method, path))
        {
            return Fault::PolicyPending;
        }
        Fault::None
    }
}

/// A tiny deterministic generator (SplitMix64): enough for fault dice, no extra dependency.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected_and_seeds_reproduce() {
        let faults = Faults {
            rate_429: 0.25,
            rate_500: 0.25,
            seed: Some(7),
            ..Faults::default()
        };
        let run = || {
            let mut state = FaultState::new(faults.clone());
            (0..4000)
                .map(|_| state.decide("POST", "/wallets"))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same faults");
        let count = |f: Fault| a.iter().filter(|x| **x == f).count();
        let n429 = count(Fault::TooManyRequests {
            retry_after_secs: 0,
        });
        let n500 = count(Fault::InternalError);
        assert!((800..1200).contains(&n429), "{n429}");
        assert!((800..1200).contains(&n500), "{n500}");
        assert_eq!(count(Fault::Drop) + count(Fault::BadGateway), 0);
    }

    #[test]
    fn only_paths_and_policy_rules_target_requests() {
        let mut state = FaultState::new(Faults {
            rate_502: 1.0,
            only_paths: vec!["POST /wallets".into()],
            policy_pending_paths: vec!["POST /wallets/{id}/signatures".into()],
            ..Faults::default()
        });
        assert_eq!(state.decide("POST", "/wallets"), Fault::BadGateway);
        assert_eq!(state.decide("POST", "/auth/action/init"), Fault::None);
        assert_eq!(
            state.decide("POST", "/wallets/wa-1/signatures"),
            Fault::PolicyPending
        );
    }
}

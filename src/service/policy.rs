//! A client's policy: which requests the service approves for it. Default deny: a request is
//! approved only when one of the client's rules allows its method, its path and its body.
//!
//! ```toml
//! [[clients.rules]]
//! allow = "POST /wallets"                       # an endpoint template of the Dfns API
//! body.network = ["EthereumSepolia", "Bitcoin"] # optional: field in a list…
//!
//! [[clients.rules]]
//! allow = "POST /wallets/wa-01abc/signatures"   # a literal id where the template has {walletId}
//! body.kind = "Hash"                            # …or field equal to a value
//! ```
//!
//! Rules are checked when the file is loaded: a path that is no Dfns endpoint needing a user
//! action (the endpoint table) is refused there, not silently never matched.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::sanitize_text;
use crate::protocol::{lookup, strip_query, Method};

/// One `METHOD /path` rule and its body constraints.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rule {
    /// The rule as written (`POST /wallets/{walletId}/signatures`).
    pub text: String,
    /// The method it allows.
    pub method: Method,
    segments: Vec<Segment>,
    /// Constraints on the request body, all of which must hold.
    pub body: Vec<BodyConstraint>,
}

/// One path segment of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `{name}`: any one segment.
    Any,
    /// A literal segment (compared with the request's segment as sent, percent-encoding and all).
    Literal(String),
}

/// A body field that must equal one of the listed values.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BodyConstraint {
    /// The field's path in the JSON body, dot-separated (`network`, `requestBody.kind`).
    pub field: String,
    /// The values allowed (one for "equals", several for "in list").
    pub allowed: Vec<Value>,
}

/// A client's rate limit: at most `count` approvals per `per`, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Approvals allowed per period (also the burst).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// Rule number `index` (1-based, in file order) allows it.
    Allowed {
        /// 1-based position of the rule among the client's rules.
        index: usize,
        /// The rule as written.
        rule: String,
    },
    /// No rule allows it; `reason` says why, naming the nearest rule when one matched the path.
    Denied {
        /// Why, in a sentence (values from the request are sanitised and capped).
        reason: String,
    },
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed { index, rule } => write!(f, "allowed by rule {index} ({rule})"),
            Decision::Denied { reason } => write!(f, "denied: {reason}"),
        }
    }
}

/// Why a rule's text was refused (the loader adds the file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleError(pub(crate) String);

impl Rule {
    /// Parses `METHOD /path`, checking the path against the endpoint table.
    pub(crate) fn parse(text: &str, body: Vec<BodyConstraint>) -> Result<Rule, RuleError> {
        let (method, path) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| RuleError("expected `METHOD /path`, e.g. `POST /wallets`".to_owned()))?;
        let method: Method = method
            .parse()
            .map_err(|_| RuleError(format!("`{}` is not an HTTP method", clip(method))))?;
        let path = path.trim();
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(RuleError(
                "the path must start with `/` and have no query string".to_owned(),
            ));
        }
        let segments: Vec<Segment> = path[1..]
            .split('/')
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') && s.len() > 2 {
                    Segment::Any
                } else {
                    Segment::Literal(s.to_owned())
                }
            })
            .collect();
        if segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(l) if l.is_empty() || l.contains(['{', '}'])))
        {
            return Err(RuleError(
                "empty segment, or a brace that is not a whole `{name}` segment".to_owned(),
            ));
        }
        // The table decides what the rule is: a `{name}` stands for any id, so a sample path
        // with a placeholder id (`_`, which no fixed word of the API is) must land on an
        // endpoint that needs a user action.
        let sample: String = segments
            .iter()
            .map(|s| match s {
                Segment::Any => "/_".to_owned(),
                Segment::Literal(l) => format!("/{l}"),
            })
            .collect();
        let info = lookup(method, &sample);
        let Some(template) = info.template else {
            return Err(RuleError(format!(
                "{method} {} is not a Dfns API endpoint (write the path as the API documents \
                 it, e.g. POST /wallets/{{walletId}}/signatures)",
                clip(path)
            )));
        };
        if !info.needs_user_action {
            return Err(RuleError(format!(
                "{method} {template} needs no user action: the service never signs for it, \
                 and passes it through without a rule"
            )));
        }
        Ok(Rule {
            text: format!("{method} {}", path),
            method,
            segments,
            body,
        })
    }

    /// Whether the method and path match (the body aside). `path` may carry a query string.
    fn matches_path(&self, method: Method, path: &str) -> bool {
        if method != self.method {
            return false;
        }
        let path = strip_query(path);
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut given = rest.split('/');
        for segment in &self.segments {
            match (segment, given.next()) {
                (_, None) => return false,
                (Segment::Any, Some(s)) if !s.is_empty() => {}
                (Segment::Literal(l), Some(s)) if l == s => {}
                _ => return false,
            }
        }
        given.next().is_none()
    }

    /// The first constraint the body breaks, with what the body has there.
    fn body_mismatch<'a>(
        &'a self,
        body: &'a Value,
    ) -> Option<(&'a BodyConstraint, Option<&'a Value>)> {
        self.body.iter().find_map(|c| {
            let found = c
                .field
                .split('.')
                .try_fold(body, |value, name| value.get(name));
            match found {
                Some(v) if c.allowed.contains(v) => None,
                other => Some((c, other)),
            }
        })
    }
}

impl fmt::Display for BodyConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<String> = self.allowed.iter().map(Value::to_string).collect();
        match values.as_slice() {
            [one] => write!(f, "{} = {one}", self.field),
            _ => write!(f, "{} in [{}]", self.field, values.join(", ")),
        }
    }
}

/// A client's rules, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// The rules; the first that allows a request is the one named.
    pub rules: Vec<Rule>,
    /// At most this many approvals (None: unlimited).
    pub rate_limit: Option<RateLimit>,
}

impl Policy {
    /// A policy of these rules.
    pub fn new(rules: Vec<Rule>, rate_limit: Option<RateLimit>) -> Policy {
        Policy { rules, rate_limit }
    }

    /// Which rule allows `method path` with `payload` (the request body as sent; empty for
    /// none), or why none does. The rate limit is not consulted here: the service counts it when it signs.
    pub fn check(&self, method: Method, path: &str, payload: &str) -> Decision {
        let body: Value = if payload.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(payload) {
                Ok(v) => v,
                Err(_) => Value::Null,
            }
        };
        let mut nearest: Option<String> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_path(method, path) {
                continue;
            }
            match rule.body_mismatch(&body) {
                None => {
                    return Decision::Allowed {
                        index: i + 1,
                        rule: rule.text.clone(),
                    }
                }
                Some((constraint, found)) if nearest.is_none() => {
                    let found = match found {
                        Some(v) => format!("has {}", sanitize_text(&v.to_string(), 80)),
                        None => "does not have it".to_owned(),
                    };
                    nearest = Some(format!(
                        "rule {} ({}) allows it only with {constraint}; the body {found}",
                        i + 1,
                        rule.text
                    ));
                }
                Some(_) => {}
            }
        }
        let reason = nearest.unwrap_or_else(|| {
            let template = lookup(method, path)
                .template
                .unwrap_or("(not in the endpoint table)");
            format!(
                "no rule allows {method} {} (endpoint {method} {template})",
                sanitize_text(strip_query(path), 120)
            )
        });
        Decision::Denied { reason }
    }
}

/// A token bucket per client, in this process (instances behind a load balancer each count
/// their own).
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A full bucket.
    pub(crate) fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            tokens: f64::from(limit.count),
            refilled: Instant::now(),
        }
    }

    /// Takes one approval at `now`; `Err(wait)` when the bucket is empty.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.limit.count) / self.limit.per.as_secs_f64();
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.limit.count));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

impl RateLimit {
    /// Parses `N/s`, `N/min` or `N/h` (also `second`, `minute`, `hour`).
    pub(crate) fn parse(text: &str) -> Result<RateLimit, String> {
        let bad = || format!("`{}`: expected N/s, N/min or N/h, e.g. 10/s", clip(text));
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err("a rate of 0 allows nothing: remove the client's keys instead".to_owned());
        }
        Ok(RateLimit { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

fn clip(text: &str) -> String {
    sanitize_text(text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(text: &str) -> Rule {
        Rule::parse(text, Vec::new()).unwrap()
    }

    fn networks(list: &[&str]) -> Vec<BodyConstraint> {
        vec![BodyConstraint {
            field: "network".to_owned(),
            allowed: list.iter().map(|n| json!(n)).collect(),
        }]
    }

    #[test]
    fn rules_are_checked_against_the_endpoint_table() {
        assert!(Rule::parse("POST /wallets", vec![]).is_ok());
        assert!(Rule::parse("POST /wallets/{walletId}/signatures", vec![]).is_ok());
        assert!(Rule::parse("post /wallets/wa-1/signatures", vec![]).is_ok());
        let refused = |t: &str| Rule::parse(t, vec![]).unwrap_err().0;
        assert!(refused("POST /walets").contains("is not a Dfns API endpoint"));
        assert!(refused("GET /wallets").contains("needs no user action"));
        assert!(refused("FETCH /wallets").contains("not an HTTP method"));
        assert!(refused("/wallets").contains("METHOD /path"));
        assert!(refused("POST wallets").contains("start with `/`"));
        assert!(refused("POST /wallets?x=1").contains("no query"));
        assert!(refused("POST /wallets/{a}x/signatures").contains("brace"));
        // `{name}` over the fixed word of `/wallets/{}/signatures`: a placeholder id never
        // matches a fixed word, so no endpoint has that shape.
        assert!(refused("POST /{x}/{walletId}/signatures").contains("is not a Dfns API endpoint"));
    }

    #[test]
    fn a_request_is_allowed_by_the_first_matching_rule_and_denied_by_default() {
        let policy = Policy::new(
            vec![
                rule("POST /wallets/wa-1/signatures"),
                rule("POST /wallets/{walletId}/signatures"),
            ],
            None,
        );
        let check = |p: &str| policy.check(Method::Post, p, "{}");
        assert_eq!(
            check("/wallets/wa-1/signatures"),
            Decision::Allowed {
                index: 1,
                rule: "POST /wallets/wa-1/signatures".into()
            }
        );
        assert_eq!(
            check("/wallets/wa-2/signatures?x=1"),
            Decision::Allowed {
                index: 2,
                rule: "POST /wallets/{walletId}/signatures".into()
            }
        );
        let denied = policy.check(Method::Post, "/wallets", "{}");
        assert_eq!(
            denied.to_string(),
            "denied: no rule allows POST /wallets (endpoint POST /wallets)"
        );
        assert!(!policy
            .check(Method::Delete, "/wallets/wa-1/signatures", "")
            .is_allowed());
        assert!(!check("/wallets/wa-1/signatures/extra").is_allowed());
        assert!(!check("/wallets//signatures").is_allowed());
        assert!(!Policy::default()
            .check(Method::Post, "/wallets", "{}")
            .is_allowed());
    }

    #[test]
    fn body_constraints_name_the_field_and_what_the_body_has() {
        let policy = Policy::new(
            vec![Rule::parse("POST /wallets", networks(&["Bitcoin", "EthereumSepolia"])).unwrap()],
            None,
        );
        let check = |body: &str| policy.check(Method::Post, "/wallets", body);
        assert!(check(r#"{"network":"Bitcoin"}"#).is_allowed());
        assert!(check(r#"{"network":"EthereumSepolia","name":"x"}"#).is_allowed());
        assert_eq!(
            check(r#"{"network":"Tron"}"#).to_string(),
            "denied: rule 1 (POST /wallets) allows it only with network in [\"Bitcoin\", \
             \"EthereumSepolia\"]; the body has \"Tron\""
        );
        assert!(check(r#"{"name":"x"}"#)
            .to_string()
            .ends_with("the body does not have it"));
        assert!(!check("not json").is_allowed());
        assert!(!check("").is_allowed());
        // Nested fields, and a non-string value.
        let nested = Policy::new(
            vec![Rule::parse(
                "POST /wallets/{walletId}/signatures",
                vec![BodyConstraint {
                    field: "requestBody.kind".into(),
                    allowed: vec![json!("Hash")],
                }],
            )
            .unwrap()],
            None,
        );
        assert!(nested
            .check(
                Method::Post,
                "/wallets/wa-1/signatures",
                r#"{"requestBody":{"kind":"Hash"}}"#
            )
            .is_allowed());
        assert!(!nested
            .check(
                Method::Post,
                "/wallets/wa-1/signatures",
                r#"{"kind":"Hash"}"#
            )
            .is_allowed());
    }

    #[test]
    fn the_rate_limit_refills_over_its_period() {
        let limit = RateLimit::parse("2/s").unwrap();
        assert_eq!(limit.to_string(), "2/s");
        let mut bucket = RateLimiter::new(limit);
        let t0 = Instant::now();
        assert!(bucket.take(t0).is_ok());
        assert!(bucket.take(t0).is_ok());
        let wait = bucket.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(bucket.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(bucket.take(t0 + Duration::from_millis(500)).is_err());
        assert_eq!(
            RateLimit::parse("60/min").unwrap().per,
            Duration::from_secs(60)
        );
        assert!(RateLimit::parse("0/s").is_err());
        assert!(RateLimit::parse("ten/s").is_err());
        assert!(RateLimit::parse("10/day").is_err());
    }
}

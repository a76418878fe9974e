//! The service's metrics, in the OpenMetrics text format for Prometheus (`prometheus-client`:
//! one [`Registry`], typed metric families).
//!
//! Exported (all under `dfns_signer_`):
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `dfns_signer_info` | info | `version`, `instance_name` | always 1: which build, and the name this instance was given |
//! | `dfns_signer_approvals_total` | counter | `key`, `client`, `result` | one per approval decision; `result` is `signed`, `policy_denied`, `rate_limited`, `not_approved`, `signing_failed` or `audit_failed`; `key` is `""` when none was chosen yet |
//! | `dfns_signer_stage_seconds` | histogram | `stage`, `backend` | time of each stage: `init`, `sign`, `complete`, `upstream`; `backend` (`pkcs11`, `piv`, `software`) only for `sign`, `""` otherwise; buckets 1 ms … 10 s |
//! | `dfns_signer_upstream_responses_total` | counter | `class` | Dfns API answers: `2xx` (but 202), `202`, `429`, `4xx` (but 429), `5xx`, `other` (1xx, 3xx) |
//! | `dfns_signer_refusals_total` | counter | `reason` | the service's own refusals, by error id (`dfns-signer.policy-denied`, …) |
//! | `dfns_signer_device_errors_total` | counter | `key` | a key's device failed (HSM, card, session) |
//! | `dfns_signer_pin_refusals_total` | counter | `key` | a key's device refused its PIN |
//! | `dfns_signer_key_ready` | gauge | `key` | 1 when the key's device opens and its public key matches, else 0 |
//! | `dfns_signer_session_pool_open`, `_capacity`, `_waits` | gauge | `key` | a PKCS#11 key's device sessions: open now, the most it opens, signatures that waited for one since start (read at each scrape) |
//! | `dfns_signer_requests_in_flight` | gauge | | requests being handled now |
//!
//! Labels carry names from the configuration file only (`[[keys]]` and `[[clients]]` names),
//! fixed words, and the service's own error ids: never a secret, a token, a credential id, a
//! wallet id or a request path (paths hold ids). That keeps secrets out of the monitoring system
//! and bounds the number of series by the size of the configuration, whatever clients send.
//!
//! [`ServiceMetrics`] is shared by every request (`&self` everywhere; the families lock
//! internally) and encoded on each scrape with [`ServiceMetrics::encode`], served with
//! [`CONTENT_TYPE`].

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`ServiceMetrics::encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the stage histogram's buckets, in seconds: a software signature takes well
/// under 1 ms, a network HSM a few ms, a YubiKey tens of ms, a Dfns round trip 50-500 ms, and
/// the upstream timeout defaults to 30 s (slower falls in `+Inf`).
const STAGE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How one approval ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum ApprovalResult {
    /// Signed (proxy: the user action was obtained; `/v1/sign`: the challenge was signed).
    Signed,
    /// The client's policy refused the request.
    PolicyDenied,
    /// Over the client's `rate_limit`.
    RateLimited,
    /// `/v1/sign` for a challenge whose approval is missing, altered or expired.
    NotApproved,
    /// The key, its device or the user action flow failed.
    SigningFailed,
    /// The decision could not be written to the audit log, so nothing was signed.
    AuditFailed,
}

impl ApprovalResult {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ApprovalResult::Signed => "signed",
            ApprovalResult::PolicyDenied => "policy_denied",
            ApprovalResult::RateLimited => "rate_limited",
            ApprovalResult::NotApproved => "not_approved",
            ApprovalResult::SigningFailed => "signing_failed",
            ApprovalResult::AuditFailed => "audit_failed",
        }
    }
}

impl EncodeLabelValue for ApprovalResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// A timed stage of a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `POST /auth/action/init` upstream.
    Init,
    /// The signature by the key (the `backend` label says which kind).
    Sign,
    /// `POST /auth/action` upstream.
    Complete,
    /// A request sent on to Dfns (pass-through, or the approved request).
    Upstream,
}

impl Stage {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Init => "init",
            Stage::Sign => "sign",
            Stage::Complete => "complete",
            Stage::Upstream => "upstream",
        }
    }
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: &'static str,
    instance_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    key: String,
    client: String,
    result: ApprovalResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: Stage,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

type StageFamily = Family<StageLabels, Histogram, fn() -> Histogram>;

fn stage_histogram() -> Histogram {
    Histogram::new(STAGE_BUCKETS)
}

/// The service's metrics. Cheap to update from any task; see the module doc for what they are.
#[derive(Debug)]
pub(crate) struct ServiceMetrics {
    registry: Registry,
    approvals: Family<ApprovalLabels, Counter>,
    stages: StageFamily,
    upstream: Family<ClassLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    device_errors: Family<KeyLabels, Counter>,
    pin_refusals: Family<KeyLabels, Counter>,
    key_ready: Family<KeyLabels, Gauge>,
    pool_open: Family<KeyLabels, Gauge>,
    pool_capacity: Family<KeyLabels, Gauge>,
    pool_waits: Family<KeyLabels, Gauge>,
    in_flight: Gauge,
}

impl ServiceMetrics {
    /// A registry with every family registered; `instance` names this instance in
    /// `dfns_signer_info` (the label is `instance_name`: Prometheus sets `instance` itself).
    pub(crate) fn new(instance: &str) -> ServiceMetrics {
        let mut registry = Registry::default();
        registry.register(
            "dfns_signer",
            "The dfns-signer build, and the name of this instance",
            Info::new(InfoLabels {
                version: env!("CARGO_PKG_VERSION"),
                instance_name: instance.to_owned(),
            }),
        );
        // Counters are registered without `_total`: the encoder adds it.
        let approvals = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "dfns_signer_approvals",
            "Approval decisions, by key, client and result",
            approvals.clone(),
        );
        let stages: StageFamily = Family::new_with_constructor(stage_histogram);
        registry.register_with_unit(
            "dfns_signer_stage",
            "Time of each stage of a request: init, sign (by backend), complete, upstream",
            Unit::Seconds,
            stages.clone(),
        );
        let upstream = Family::<ClassLabels, Counter>::default();
        registry.register(
            "dfns_signer_upstream_responses",
            "Answers of the Dfns API, by status class (202 and 429 counted apart)",
            upstream.clone(),
        );
        let refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dfns_signer_refusals",
            "Requests the service refused itself, by error id",
            refusals.clone(),
        );
        let device_errors = Family::<KeyLabels, Counter>::default();
        registry.register(
            "dfns_signer_device_errors",
            "Failures of a key's device (HSM, card, session)",
            device_errors.clone(),
        );
        let pin_refusals = Family::<KeyLabels, Counter>::default();
        registry.register(
            "dfns_signer_pin_refusals",
            "PINs a key's device refused",
            pin_refusals.clone(),
        );
        let key_ready = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "dfns_signer_key_ready",
            "1 when the key's device opens and its public key matches, else 0",
            key_ready.clone(),
        );
        let pool_open = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "dfns_signer_session_pool_open",
            "Device sessions open for a key (PKCS#11), idle or in use",
            pool_open.clone(),
        );
        let pool_capacity = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "dfns_signer_session_pool_capacity",
            "The most device sessions a key's pool opens",
            pool_capacity.clone(),
        );
        let pool_waits = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "dfns_signer_session_pool_waits",
            "Signatures that waited for a free session, since start (only ever grows)",
            pool_waits.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "dfns_signer_requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        ServiceMetrics {
            registry,
            approvals,
            stages,
            upstream,
            refusals,
            device_errors,
            pin_refusals,
            key_ready,
            pool_open,
            pool_capacity,
            pool_waits,
            in_flight,
        }
    }

    /// Sets a key's session pool figures (summed over its devices), read at each scrape.
    pub(crate) fn session_pool(&self, key: &str, open: usize, capacity: usize, waits: u64) {
        let labels = KeyLabels {
            key: key.to_owned(),
        };
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.pool_open
            .get_or_create(&labels)
            .set(as_gauge(open as u64));
        self.pool_capacity
            .get_or_create(&labels)
            .set(as_gauge(capacity as u64));
        self.pool_waits.get_or_create(&labels).set(as_gauge(waits));
    }

    /// Counts one approval decision. `key` is `""` when none was chosen yet.
    pub(crate) fn approval(&self, key: &str, client: &str, result: ApprovalResult) {
        self.approvals
            .get_or_create(&ApprovalLabels {
                key: key.to_owned(),
                client: client.to_owned(),
                result,
            })
            .inc();
    }

    /// Records how long a stage took. `backend` is kept for [`Stage::Sign`] only (the other
    /// stages are labelled `backend=""` whatever is passed); a negative or non-finite time is
    /// ignored.
    pub(crate) fn observe(&self, stage: Stage, backend: &str, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let backend = match stage {
            Stage::Sign => backend.to_owned(),
            _ => String::new(),
        };
        self.stages
            .get_or_create(&StageLabels { stage, backend })
            .observe(seconds);
    }

    /// Counts one answer of the Dfns API by its status.
    pub(crate) fn upstream_status(&self, status: u16) {
        let class = match status {
            202 => "202",
            429 => "429",
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.upstream.get_or_create(&ClassLabels { class }).inc();
    }

    /// Counts one refusal by the service, by its error id (`dfns-signer.policy-denied`).
    pub(crate) fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a failure of `key`'s device.
    pub(crate) fn device_error(&self, key: &str) {
        self.device_errors
            .get_or_create(&KeyLabels {
                key: key.to_owned(),
            })
            .inc();
    }

    /// Counts a PIN that `key`'s device refused.
    pub(crate) fn pin_refused(&self, key: &str) {
        self.pin_refusals
            .get_or_create(&KeyLabels {
                key: key.to_owned(),
            })
            .inc();
    }

    /// Sets whether `key` is ready (its device opens and its public key matches).
    pub(crate) fn key_ready(&self, key: &str, ready: bool) {
        self.key_ready
            .get_or_create(&KeyLabels {
                key: key.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Counts a request in flight until the guard is dropped.
    pub(crate) fn in_flight(&self) -> InFlightGuard {
        self.in_flight.inc();
        InFlightGuard {
            gauge: self.in_flight.clone(),
        }
    }

    /// The OpenMetrics text exposition of every metric (ends with `# EOF`), served with
    /// [`CONTENT_TYPE`].
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String does not fail, nor do these label sets.
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

/// Holds `dfns_signer_requests_in_flight` up by one until dropped.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub(crate) struct InFlightGuard {
    gauge: Gauge,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn has(text: &str, line: &str) {
        assert!(lines(text).contains(&line), "no line `{line}` in:\n{text}");
    }

    #[test]
    fn shared_across_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<ServiceMetrics>();
        send_sync::<InFlightGuard>();
    }

    #[test]
    fn approvals_by_key_client_and_result() {
        let m = ServiceMetrics::new("signer-a");
        m.approval("hsm", "payments", ApprovalResult::Signed);
        m.approval("hsm", "payments", ApprovalResult::Signed);
        m.approval("", "payments", ApprovalResult::PolicyDenied);
        m.approval("yubikey", "audit", ApprovalResult::RateLimited);
        m.approval("hsm", "payments", ApprovalResult::AuditFailed);
        let text = m.encode();
        has(&text, "# TYPE dfns_signer_approvals counter");
        has(
            &text,
            r#"dfns_signer_approvals_total{key="hsm",client="payments",result="signed"} 2"#,
        );
        has(
            &text,
            r#"dfns_signer_approvals_total{key="",client="payments",result="policy_denied"} 1"#,
        );
        has(
            &text,
            r#"dfns_signer_approvals_total{key="yubikey",client="audit",result="rate_limited"} 1"#,
        );
        has(
            &text,
            r#"dfns_signer_approvals_total{key="hsm",client="payments",result="audit_failed"} 1"#,
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        has(
            &text,
            &format!(
                r#"dfns_signer_info{{version="{}",instance_name="signer-a"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        );
    }

    #[test]
    fn every_result_has_its_label() {
        let m = ServiceMetrics::new("");
        let all = [
            ApprovalResult::Signed,
            ApprovalResult::PolicyDenied,
            ApprovalResult::RateLimited,
            ApprovalResult::NotApproved,
            ApprovalResult::SigningFailed,
            ApprovalResult::AuditFailed,
        ];
        for result in all {
            m.approval("k", "c", result);
        }
        let text = m.encode();
        for result in all {
            has(
                &text,
                &format!(
                    r#"dfns_signer_approvals_total{{key="k",client="c",result="{}"}} 1"#,
                    result.as_str()
                ),
            );
        }
    }

    #[test]
    fn stage_histograms() {
        let m = ServiceMetrics::new("a");
        m.observe(Stage::Sign, "pkcs11", 0.004);
        m.observe(Stage::Sign, "pkcs11", 0.02);
        m.observe(Stage::Sign, "piv", 0.08);
        m.observe(Stage::Init, "pkcs11", 0.3); // backend dropped: not a signing stage
        m.observe(Stage::Upstream, "", 12.0); // beyond the last bucket
        m.observe(Stage::Complete, "", f64::NAN); // ignored
        m.observe(Stage::Complete, "", -1.0); // ignored
        let text = m.encode();
        has(&text, "# TYPE dfns_signer_stage_seconds histogram");
        has(&text, "# UNIT dfns_signer_stage_seconds seconds");
        has(
            &text,
            r#"dfns_signer_stage_seconds_count{stage="sign",backend="pkcs11"} 2"#,
        );
        has(
            &text,
            r#"dfns_signer_stage_seconds_bucket{le="0.005",stage="sign",backend="pkcs11"} 1"#,
        );
        has(
            &text,
            r#"dfns_signer_stage_seconds_bucket{le="0.025",stage="sign",backend="pkcs11"} 2"#,
        );
        has(
            &text,
            r#"dfns_signer_stage_seconds_count{stage="sign",backend="piv"} 1"#,
        );
        has(
            &text,
            r#"dfns_signer_stage_seconds_count{stage="init",backend=""} 1"#,
        );
        has(
            &text,
            r#"dfns_signer_stage_seconds_bucket{le="10.0",stage="upstream",backend=""} 0"#,
        );
        has(
            &text,
            r#"dfns_signer_stage_seconds_bucket{le="+Inf",stage="upstream",backend=""} 1"#,
        );
        assert!(
            !text.contains(r#"stage="complete""#),
            "NaN and negative times are dropped:\n{text}"
        );
        assert!(!text.contains(r#"stage="init",backend="pkcs11""#), "{text}");
    }

    #[test]
    fn upstream_classes() {
        let m = ServiceMetrics::new("a");
        for status in [200, 201, 202, 202, 400, 401, 429, 500, 503, 503, 302] {
            m.upstream_status(status);
        }
        let text = m.encode();
        for (class, count) in [("2xx", 2), ("202", 2), ("4xx", 2), ("429", 1), ("5xx", 3)] {
            has(
                &text,
                &format!(r#"dfns_signer_upstream_responses_total{{class="{class}"}} {count}"#),
            );
        }
        has(
            &text,
            r#"dfns_signer_upstream_responses_total{class="other"} 1"#,
        );
    }

    #[test]
    fn refusals_devices_and_keys() {
        let m = ServiceMetrics::new("a");
        m.refusal("dfns-signer.policy-denied");
        m.refusal("dfns-signer.policy-denied");
        m.refusal("dfns-signer.unknown-client");
        m.device_error("hsm");
        m.pin_refused("yubikey");
        m.pin_refused("yubikey");
        m.key_ready("hsm", true);
        m.key_ready("yubikey", true);
        m.key_ready("yubikey", false);
        let text = m.encode();
        has(
            &text,
            r#"dfns_signer_refusals_total{reason="dfns-signer.policy-denied"} 2"#,
        );
        has(
            &text,
            r#"dfns_signer_refusals_total{reason="dfns-signer.unknown-client"} 1"#,
        );
        has(&text, r#"dfns_signer_device_errors_total{key="hsm"} 1"#);
        has(&text, r#"dfns_signer_pin_refusals_total{key="yubikey"} 2"#);
        has(&text, "# TYPE dfns_signer_key_ready gauge");
        has(&text, r#"dfns_signer_key_ready{key="hsm"} 1"#);
        has(&text, r#"dfns_signer_key_ready{key="yubikey"} 0"#);
    }

    #[test]
    fn in_flight_gauge_follows_guards() {
        let m = ServiceMetrics::new("a");
        has(&m.encode(), "dfns_signer_requests_in_flight 0");
        let first = m.in_flight();
        let second = m.in_flight();
        has(&m.encode(), "dfns_signer_requests_in_flight 2");
        drop(first);
        has(&m.encode(), "dfns_signer_requests_in_flight 1");
        drop(second);
        has(&m.encode(), "dfns_signer_requests_in_flight 0");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = ServiceMetrics::new("a");
        m.approval("k\"ey", "c\\l\nient", ApprovalResult::Signed);
        has(
            &m.encode(),
            r#"dfns_signer_approvals_total{key="k\"ey",client="c\\l\nient",result="signed"} 1"#,
        );
    }

    #[test]
    fn content_type_is_openmetrics() {
        assert!(CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
    }
}

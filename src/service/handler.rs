//! One request through the service: who the client is, then `/v1/sign`, an
//! `/auth/action/init` to seal, a request to approve and sign (proxy), or a pass-through.
//!
//! Nothing is retried: a request that may have reached Dfns is answered with what Dfns said.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::approval::{unix_seconds, Record, Refusal};
use super::metrics::{ApprovalResult, Stage};
use super::policy::Decision;
use super::secret::find_by_secret;
use super::server::Role;
use super::{metrics, ClientState, Shared, APPROVAL_FIELD, CLIENT_HEADER, KEY_HEADER};
use crate::audit::AuditRecord;
use crate::protocol::{lookup, strip_query, Method, Payload, UserActionChallenge};
use crate::{BackendError, CredentialSigner, Error};

/// Largest request body accepted (Dfns bodies are small; multipart uploads are the largest).
const MAX_REQUEST_BODY: usize = 8 << 20;
/// Largest upstream answer relayed.
const MAX_RESPONSE_BODY: usize = 32 << 20;
const USER_ACTION_HEADER: &str = "x-dfns-useraction";

type Answer = Response<Full<Bytes>>;
/// A refusal returned early from a helper (boxed: a response is large).
type Refused = Box<Answer>;

/// Handles one request; never fails (a refusal is an answer).
pub(super) async fn handle(
    shared: &Shared,
    req: Request<hyper::body::Incoming>,
    role: Role,
) -> Answer {
    match (req.method().as_str(), req.uri().path(), role) {
        ("GET", "/healthz", _) => return json_answer(StatusCode::OK, &json!({ "status": "ok" })),
        ("GET", "/readyz", _) => return readyz(shared).await,
        ("GET", "/metrics", Role::Operators) => {
            shared.update_pool_metrics();
            let mut answer = Response::new(Full::new(Bytes::from(shared.metrics.encode())));
            answer.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            return answer;
        }
        (_, _, Role::Operators) => {
            return refusal(
                StatusCode::NOT_FOUND,
                "dfns-signer.not-found",
                "this listener serves GET /metrics, /healthz and /readyz only".to_owned(),
                "send Dfns requests to the service's API listener".to_owned(),
            )
        }
        _ => {}
    }
    let _in_flight = shared.metrics.in_flight();
    let answer = api(shared, req).await;
    if let Some(id) = refusal_id(&answer) {
        shared.metrics.refusal(&id);
    }
    answer
}

/// `GET /readyz`: 200 when every key's device is there and holds its key (no PIN spent), 503
/// with the key that is not, or while the service drains.
async fn readyz(shared: &Shared) -> Answer {
    if shared.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "draining": true }),
        );
    }
    let checks = shared.readiness().await;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let keys: serde_json::Map<String, Value> = checks
        .into_iter()
        .map(|(name, r)| {
            (
                name,
                Value::String(r.err().unwrap_or_else(|| "ok".to_owned())),
            )
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_answer(status, &json!({ "ready": ready, "keys": keys }))
}

/// The `error.id` of a refusal the service made itself (set as a response extension).
fn refusal_id(answer: &Answer) -> Option<String> {
    answer
        .extensions()
        .get::<RefusalId>()
        .map(|r| r.0.to_owned())
}

/// Marks a service-made refusal, for the refusal counter.
#[derive(Clone, Copy)]
struct RefusalId(&'static str);

/// The Dfns API side: `/v1/sign`, the init to seal, a request to approve, or a pass-through.
async fn api(shared: &Shared, req: Request<hyper::body::Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "dfns-signer.body-too-large",
                format!(
                    "the request body is over {} MiB, or broke off",
                    MAX_REQUEST_BODY >> 20
                ),
                "send a smaller body".to_owned(),
            )
        }
    };
    let client = match parts.headers.get(CLIENT_HEADER) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|s| find_client(shared, s)) {
            Some(c) => Some(c),
            None => {
                tracing::warn!("refused: unknown client secret");
                return refusal(
                    StatusCode::UNAUTHORIZED,
                    "dfns-signer.unknown-client",
                    "the X-Dfns-Signer-Client secret is not one of this service's clients"
                        .to_owned(),
                    "send the secret `dfns-signer serve add-client` printed for this client; \
                     its hash must be in the service's [[clients]]"
                        .to_owned(),
                );
            }
        },
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let request = Received {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
    };
    let client = client.as_deref();
    match (request.method.as_str(), strip_query(&request.path)) {
        ("POST", "/v1/sign") => sign(shared, client, &request).await,
        ("POST", "/auth/action/init") => init(shared, client, &request).await,
        _ => {
            let method: Option<Method> = request.method.as_str().parse().ok();
            match (method, client) {
                (Some(m), Some(client))
                    if !request.headers.contains_key(USER_ACTION_HEADER)
                        && lookup(m, &request.path).needs_user_action =>
                {
                    approve_and_send(shared, client, m, &request).await
                }
                _ => relay(shared, &request, None).await,
            }
        }
    }
}

/// A request as received.
struct Received {
    method: hyper::Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// The client whose secret this is, from the clients in force now (a reload mid-request
/// does not change the client a request runs as).
fn find_client(shared: &Shared, secret: &str) -> Option<Arc<ClientState>> {
    let clients = shared.clients();
    find_by_secret(clients.iter().map(|c| &c.config.secret_sha256), secret)
        .map(|i| clients[i].clone())
}

/// `POST /auth/action/init`: checks the policy when the client named itself, forwards the
/// init, and seals what the challenge approves into the answer.
async fn init(shared: &Shared, client: Option<&ClientState>, request: &Received) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InitBody {
        user_action_payload: String,
        user_action_http_method: String,
        user_action_http_path: String,
        user_action_server_kind: Option<String>,
    }
    let Ok(init) = serde_json::from_slice::<InitBody>(&request.body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "dfns-signer.malformed-init",
            "the /auth/action/init body is not {userActionPayload, userActionHttpMethod, \
             userActionHttpPath}"
                .to_owned(),
            "send the init an official SDK sends".to_owned(),
        );
    };
    let Ok(method) = init.user_action_http_method.parse::<Method>() else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "dfns-signer.malformed-init",
            "userActionHttpMethod is not an HTTP method".to_owned(),
            "send the init an official SDK sends".to_owned(),
        );
    };
    if let Some(client) = client {
        let decision = client.config.policy.check(
            method,
            &init.user_action_http_path,
            &init.user_action_payload,
        );
        if let Decision::Denied { reason } = decision {
            let decided = Decided::refused(
                client,
                method,
                &init.user_action_http_path,
                init.user_action_payload.as_bytes(),
            );
            refused_on_record(shared, &decided, &reason, ApprovalResult::PolicyDenied);
            return denied(
                &client.config.name,
                method,
                &init.user_action_http_path,
                reason,
            );
        }
    }
    let answer = match forward(shared, request, None).await {
        Ok(answer) => answer,
        Err(unreachable) => return *unreachable,
    };
    if !answer.status.is_success() {
        return answer.into_response();
    }
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&answer.body) else {
        return bad_upstream("its /auth/action/init answer is not a JSON object");
    };
    let (Some(Value::String(challenge)), Some(Value::String(identifier))) =
        (fields.get("challenge"), fields.get("challengeIdentifier"))
    else {
        return bad_upstream(
            "its /auth/action/init answer has no challenge or challengeIdentifier",
        );
    };
    let record = Record {
        client: client.map(|c| c.config.name.clone()),
        method: method.as_str().to_owned(),
        path: init.user_action_http_path,
        payload: init.user_action_payload,
        server_kind: init.user_action_server_kind,
        expires: unix_seconds(SystemTime::now()) + shared.config.approval_ttl.as_secs(),
    };
    let sealed = shared.approval.seal(&record, identifier, challenge);
    fields.insert(APPROVAL_FIELD.to_owned(), Value::String(sealed));
    tracing::info!(
        client = record.client.as_deref().unwrap_or("(unnamed)"),
        method = %method,
        path = %strip_query(&record.path),
        "init sealed"
    );
    let body = serde_json::to_vec(&Value::Object(fields)).expect("JSON serialises");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = answer.status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /v1/sign`: signs a challenge whose sealed approval verifies and whose request the
/// client's policy allows.
async fn sign(shared: &Shared, client: Option<&ClientState>, request: &Received) -> Answer {
    #[derive(Deserialize)]
    struct SignBody {
        challenge: Value,
        key: Option<String>,
    }
    let Some(client) = client else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "dfns-signer.no-client",
            "POST /v1/sign needs the X-Dfns-Signer-Client header".to_owned(),
            "give the signer adapter this client's secret".to_owned(),
        );
    };
    let parsed = serde_json::from_slice::<SignBody>(&request.body)
        .ok()
        .and_then(|b| {
            let approval = b
                .challenge
                .get(APPROVAL_FIELD)
                .and_then(Value::as_str)
                .map(str::to_owned);
            let challenge =
                UserActionChallenge::from_json(&serde_json::to_vec(&b.challenge).ok()?).ok()?;
            Some((challenge, approval, b.key))
        });
    let Some((challenge, approval, key)) = parsed else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "dfns-signer.malformed-sign",
            "the body is not {\"challenge\": <the /auth/action/init answer>}".to_owned(),
            "post the challenge object the SDK gave its signer, as is".to_owned(),
        );
    };
    let record = match shared.approval.open(
        approval.as_deref(),
        &challenge.challenge_identifier,
        &challenge.challenge,
        SystemTime::now(),
    ) {
        Ok(record) => record,
        Err(refused) => {
            let (message, fix) = match refused {
                Refusal::Missing => (
                    "this challenge did not come through the service's /auth/action/init: the \
                     service signs only requests it has seen",
                    "point the SDK's base URL at the service, so its init goes through it",
                ),
                Refusal::Invalid => (
                    "the challenge's approval does not verify: it was altered, or sealed by a \
                     service with another approval key",
                    "give every instance the same [service] approval_key, and post the \
                     challenge as the SDK gave it",
                ),
                Refusal::Expired => (
                    "the challenge's approval has expired",
                    "sign within approval_ttl_seconds of the init: ask for a new challenge",
                ),
            };
            tracing::warn!(client = %client.config.name, ?refused, "refused to sign");
            shared
                .metrics
                .approval("", &client.config.name, ApprovalResult::NotApproved);
            return refusal(
                StatusCode::FORBIDDEN,
                "dfns-signer.not-approved",
                message.to_owned(),
                fix.to_owned(),
            );
        }
    };
    if let Some(asked_by) = &record.client {
        if *asked_by != client.config.name {
            return refusal(
                StatusCode::FORBIDDEN,
                "dfns-signer.other-client",
                format!("this challenge was asked for by client `{asked_by}`"),
                "sign with the secret of the client that sent the init".to_owned(),
            );
        }
    }
    let Ok(method) = record.method.parse::<Method>() else {
        return bad_upstream("a sealed record holds no method");
    };
    let rule = match client
        .config
        .policy
        .check(method, &record.path, &record.payload)
    {
        Decision::Allowed { index, rule } => format!("rule {index} ({rule})"),
        Decision::Denied { reason } => {
            let mut decided =
                Decided::refused(client, method, &record.path, record.payload.as_bytes());
            decided.challenge_identifier = Some(&challenge.challenge_identifier);
            refused_on_record(shared, &decided, &reason, ApprovalResult::PolicyDenied);
            return denied(&client.config.name, method, &record.path, reason);
        }
    };
    let (key_name, devices) = match choose_key(shared, client, key.as_deref()) {
        Ok(chosen) => chosen,
        Err(refused) => return *refused,
    };
    let identifier = challenge.challenge_identifier.clone();
    let mut decided = Decided {
        event: "approved",
        client: &client.config.name,
        key: Some(&key_name),
        credential_id: None,
        method,
        path: &record.path,
        body: record.payload.as_bytes(),
        challenge_identifier: Some(&identifier),
        decision: "allowed",
        rule: Some(rule),
        upstream_status: None,
    };
    if let Err(limited) = take_rate(client) {
        refused_on_record(
            shared,
            &decided,
            "rate-limited",
            ApprovalResult::RateLimited,
        );
        return *limited;
    }
    let started = Instant::now();
    let first_factor = match sign_on_record(shared, &mut decided, &devices, challenge).await {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    tracing::info!(
        client = %client.config.name,
        method = %method,
        path = %strip_query(&record.path),
        key = %key_name,
        sign_ms = started.elapsed().as_millis() as u64,
        "signed"
    );
    json_answer(StatusCode::OK, &json!({ "firstFactor": first_factor }))
}

/// Proxy mode: checks the policy, then init → sign → (approval logged) → complete upstream
/// with the client's key, sends the request with the token, and relays the answer.
async fn approve_and_send(
    shared: &Shared,
    client: &ClientState,
    method: Method,
    request: &Received,
) -> Answer {
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "dfns-signer.body-not-utf8",
            "the body is not UTF-8 text".to_owned(),
            "send a JSON body".to_owned(),
        );
    };
    let rule = match client.config.policy.check(method, &request.path, text) {
        Decision::Allowed { index, rule } => format!("rule {index} ({rule})"),
        Decision::Denied { reason } => {
            let decided = Decided::refused(client, method, &request.path, &request.body);
            refused_on_record(shared, &decided, &reason, ApprovalResult::PolicyDenied);
            return denied(&client.config.name, method, &request.path, reason);
        }
    };
    let key = request
        .headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok());
    let (key_name, devices) = match choose_key(shared, client, key) {
        Ok(chosen) => chosen,
        Err(refused) => return *refused,
    };
    let Some(token) = bearer(&request.headers) else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "dfns-signer.no-auth-token",
            "the request has no Authorization: Bearer token".to_owned(),
            "send the caller's own Dfns token, as to the Dfns API".to_owned(),
        );
    };
    let payload = if text.trim().is_empty() {
        Payload::empty()
    } else {
        match Payload::raw_json(text) {
            Ok(p) => p,
            Err(_) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "dfns-signer.body-not-json",
                    "the body is not JSON".to_owned(),
                    "send the JSON body the Dfns API expects".to_owned(),
                )
            }
        }
    };
    let mut decided = Decided {
        event: "approved",
        client: &client.config.name,
        key: Some(&key_name),
        credential_id: None,
        method,
        path: &request.path,
        body: &request.body,
        challenge_identifier: None,
        decision: "allowed",
        rule: Some(rule),
        upstream_status: None,
    };
    if let Err(limited) = take_rate(client) {
        refused_on_record(
            shared,
            &decided,
            "rate-limited",
            ApprovalResult::RateLimited,
        );
        return *limited;
    }
    let dfns = shared.dfns.with_auth_token(token);
    let started = Instant::now();
    let challenge = match dfns.user_action_init(method, &request.path, &payload).await {
        Ok(challenge) => challenge,
        Err(e) => return signing_failed(&e),
    };
    shared
        .metrics
        .observe(Stage::Init, "", started.elapsed().as_secs_f64());
    let identifier = challenge.challenge_identifier.clone();
    decided.challenge_identifier = Some(&identifier);
    // The signature leaves (to `/auth/action`) only once the approval is on disk.
    let first_factor = match sign_on_record(shared, &mut decided, &devices, challenge).await {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let completing = Instant::now();
    let user_action = match dfns.user_action_complete(&identifier, first_factor).await {
        Ok(token) => token,
        Err(e) => return signing_failed(&e),
    };
    shared
        .metrics
        .observe(Stage::Complete, "", completing.elapsed().as_secs_f64());
    let sending = Instant::now();
    let answer = relay(shared, request, Some(&user_action)).await;
    shared
        .metrics
        .observe(Stage::Upstream, "", sending.elapsed().as_secs_f64());
    let status = answer.status().as_u16();
    shared.metrics.upstream_status(status);
    // What the approved request did. It has run: a failure to log this is reported, not
    // turned into a refusal the caller could take for "not done".
    let completed = Decided {
        event: "completed",
        upstream_status: Some(status),
        ..decided
    };
    if let Err(e) = audit(shared, &completed) {
        tracing::error!(error = %e, "the audit log refused a completion line");
    }
    tracing::info!(
        client = %client.config.name,
        method = %method,
        path = %strip_query(&request.path),
        key = %key_name,
        status,
        user_action_ms = started.elapsed().as_millis() as u64,
        "approved, signed and sent"
    );
    answer
}

/// Signs on the key's devices, times the signature, and records the approval before it may
/// leave: the first factor, or the answer that refuses (the failure is counted and logged).
async fn sign_on_record<'a>(
    shared: &Shared,
    decided: &mut Decided<'a>,
    devices: &'a [CredentialSigner],
    challenge: UserActionChallenge,
) -> Result<crate::protocol::FirstFactor, Refused> {
    let started = Instant::now();
    let first_factor = match sign_on_a_device(devices.to_vec(), challenge).await {
        Ok(Ok((device, f))) => {
            decided.credential_id = Some(devices[device].credential_id());
            f
        }
        Ok(Err(e)) => return Err(Box::new(sign_failure(shared, decided, &e))),
        Err(_) => {
            return Err(Box::new(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "dfns-signer.signing-panicked",
                "signing stopped unexpectedly".to_owned(),
                "see the service's log".to_owned(),
            )))
        }
    };
    shared.metrics.observe(
        Stage::Sign,
        backend_kind(shared, decided.key.unwrap_or("")),
        started.elapsed().as_secs_f64(),
    );
    approve_on_record(shared, decided)?;
    Ok(first_factor)
}

/// Signs on the first device that can, on a blocking thread (hardware blocks): a device error
/// (or a credential the challenge does not allow) moves to the next device, a PIN error never
/// does — another device's PIN try is not spent because this one's was refused. The index of
/// the device that signed.
async fn sign_on_a_device(
    devices: Vec<CredentialSigner>,
    challenge: UserActionChallenge,
) -> Result<Result<(usize, crate::protocol::FirstFactor), Error>, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let mut last = None;
        for (i, signer) in devices.iter().enumerate() {
            match signer.assert(&challenge) {
                Ok(f) => return Ok((i, f)),
                Err(e) if moves_on(&e) && i + 1 < devices.len() => {
                    tracing::warn!(device = i + 1, key = %signer.backend().describe(), error = %e, "device failed; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("a key has at least one device"))
    })
    .await
}

/// Whether a signing error is the device's (the next device may sign) rather than the PIN's or
/// the request's.
fn moves_on(e: &Error) -> bool {
    matches!(
        e,
        Error::Backend(
            BackendError::Device { .. }
                | BackendError::DeviceNotFound { .. }
                | BackendError::KeyNotFound { .. }
                | BackendError::TouchTimeout { .. }
                | BackendError::Crypto(_)
        ) | Error::Protocol(crate::ProtocolError::CredentialNotAllowed { .. })
    )
}

/// One decision, as the audit log and the metrics see it. Never a token or a secret.
struct Decided<'a> {
    event: &'static str,
    client: &'a str,
    key: Option<&'a str>,
    credential_id: Option<&'a str>,
    method: Method,
    path: &'a str,
    body: &'a [u8],
    challenge_identifier: Option<&'a str>,
    decision: &'static str,
    rule: Option<String>,
    upstream_status: Option<u16>,
}

impl<'a> Decided<'a> {
    /// A refusal before any key was chosen.
    fn refused(client: &'a ClientState, method: Method, path: &'a str, body: &'a [u8]) -> Self {
        Decided {
            event: "refused",
            client: &client.config.name,
            key: None,
            credential_id: None,
            method,
            path,
            body,
            challenge_identifier: None,
            decision: "denied",
            rule: None,
            upstream_status: None,
        }
    }
}

/// Writes one decision to the audit log, if there is one.
fn audit(shared: &Shared, d: &Decided<'_>) -> Result<(), crate::audit::AuditError> {
    let Some(log) = &shared.audit else {
        return Ok(());
    };
    let mut record = AuditRecord::new(d.event)
        .client(d.client)
        .method(d.method.as_str())
        .path(strip_query(d.path))
        .body(d.body)
        .decision(d.decision);
    if let Some(key) = d.key {
        record = record.key(key);
    }
    if let Some(cred) = d.credential_id {
        record = record.credential_id(cred);
    }
    if let Some(id) = d.challenge_identifier {
        record = record.challenge_identifier(id);
    }
    if let Some(rule) = &d.rule {
        record = record.rule(rule);
    }
    if let Some(status) = d.upstream_status {
        record = record.upstream_status(status);
    }
    log.append(&record).map(|_| ())
}

/// Records an approval before it leaves: an approval that cannot be logged is not given.
fn approve_on_record(shared: &Shared, d: &Decided<'_>) -> Result<(), Refused> {
    let key = d.key.unwrap_or("");
    if let Err(e) = audit(shared, d) {
        tracing::error!(error = %e, "the audit log refused an approval; the signature is dropped");
        shared
            .metrics
            .approval(key, d.client, ApprovalResult::AuditFailed);
        return Err(Box::new(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "dfns-signer.audit-failed",
            "the approval could not be written to the audit log, so it was not given".to_owned(),
            "the service's operator should check the audit log's disk and permissions".to_owned(),
        )));
    }
    shared
        .metrics
        .approval(key, d.client, ApprovalResult::Signed);
    Ok(())
}

/// Records a refusal (best effort: a refusal stands even when it cannot be logged).
fn refused_on_record(shared: &Shared, d: &Decided<'_>, why: &str, result: ApprovalResult) {
    let refused = Decided {
        event: "refused",
        decision: "denied",
        rule: Some(why.to_owned()),
        ..*d
    };
    if let Err(e) = audit(shared, &refused) {
        tracing::error!(error = %e, "the audit log refused a refusal line");
    }
    shared
        .metrics
        .approval(d.key.unwrap_or(""), d.client, result);
}

/// A signature the key or its device refused: counted, logged, answered 503.
fn sign_failure(shared: &Shared, d: &Decided<'_>, e: &Error) -> Answer {
    let key = d.key.unwrap_or("");
    match e {
        Error::Backend(
            BackendError::PinIncorrect { .. }
            | BackendError::PinBlocked { .. }
            | BackendError::LastPinTry { .. },
        ) => shared.metrics.pin_refused(key),
        Error::Backend(_) => shared.metrics.device_error(key),
        _ => {}
    }
    refused_on_record(shared, d, "signing failed", ApprovalResult::SigningFailed);
    signing_failed(e)
}

/// `pkcs11`, `piv` or `software`: the sign latency's label.
fn backend_kind<'a>(shared: &'a Shared, key: &str) -> &'a str {
    let scheme = shared
        .config
        .key(key)
        .and_then(|k| k.devices.first())
        .map(|d| d.key.split(':').next().unwrap_or(""));
    match scheme {
        Some("pkcs11") => "pkcs11",
        Some("piv") => "piv",
        _ => "software",
    }
}

/// The key a request signs with: the one asked for (`X-Dfns-Signer-Key`, `key`) when the
/// client may use it, else the client's first; its name and its devices' signers.
fn choose_key(
    shared: &Shared,
    client: &ClientState,
    asked: Option<&str>,
) -> Result<(String, Vec<CredentialSigner>), Refused> {
    let name = match asked {
        Some(name) if client.config.keys.iter().any(|k| k == name) => name,
        Some(name) => {
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "dfns-signer.key-not-allowed",
                format!(
                    "client `{}` may not use key `{}`",
                    client.config.name,
                    crate::error::sanitize_text(name, 60)
                ),
                format!("use one of: {}", client.config.keys.join(", ")),
            )))
        }
        None => &client.config.keys[0],
    };
    // A reload may name keys only among those opened at start (`reload` checks).
    let signer = shared
        .signers
        .get(name)
        .expect("every client key was opened at start");
    Ok((name.to_owned(), signer.clone()))
}

fn take_rate(client: &ClientState) -> Result<(), Refused> {
    let Some(limiter) = &client.limiter else {
        return Ok(());
    };
    let taken = limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take(Instant::now());
    taken.map_err(|wait| {
        let limit = client
            .config
            .policy
            .rate_limit
            .expect("a limiter has a limit");
        let mut answer = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "dfns-signer.rate-limited",
            format!(
                "client `{}` is over its rate limit of {limit}",
                client.config.name
            ),
            "wait and send a new request (a new challenge)".to_owned(),
        );
        let seconds = wait.as_secs() + 1;
        answer
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
        Box::new(answer)
    })
}

fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    (!token.trim().is_empty()).then(|| SecretString::from(token.trim().to_owned()))
}

/// What came back from upstream.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Upstream {
    fn into_response(self) -> Answer {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) && name != hyper::header::CONTENT_LENGTH {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }
}

/// Sends the request on unchanged (with `user_action` when given) and relays the answer.
async fn relay(shared: &Shared, request: &Received, user_action: Option<&SecretString>) -> Answer {
    match forward(shared, request, user_action).await {
        Ok(answer) => answer.into_response(),
        Err(unreachable) => *unreachable,
    }
}

async fn forward(
    shared: &Shared,
    request: &Received,
    user_action: Option<&SecretString>,
) -> Result<Upstream, Refused> {
    let url = format!(
        "{}{}",
        shared.config.upstream.trim_end_matches('/'),
        request.path
    );
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let ours = name == CLIENT_HEADER || name == KEY_HEADER;
        if !ours
            && !is_hop_by_hop(name)
            && name != hyper::header::HOST
            && name != hyper::header::CONTENT_LENGTH
        {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(token) = user_action {
        let mut value = HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(token))
            .map_err(|_| Box::new(bad_upstream("its user action token is not a header value")))?;
        value.set_sensitive(true);
        headers.insert(USER_ACTION_HEADER, value);
    }
    let sent = shared
        .http
        .request(request.method.clone(), &url)
        .headers(headers)
        .body(request.body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            // reqwest's message names the URL, never a header.
            return Err(Box::new(refusal(
                StatusCode::BAD_GATEWAY,
                "dfns-signer.upstream-unreachable",
                format!(
                    "the Dfns API at {} did not answer: {e}",
                    shared.config.upstream
                ),
                "check [service] upstream and the network; the request may not have run, \
                 or may have: look before sending it again"
                    .to_owned(),
            )));
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut response = response;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_RESPONSE_BODY => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => return Err(Box::new(bad_upstream("its answer is over 32 MiB"))),
            Ok(None) => break,
            Err(e) => {
                return Err(Box::new(refusal(
                    StatusCode::BAD_GATEWAY,
                    "dfns-signer.upstream-broke-off",
                    format!("the Dfns API's answer broke off: {e}"),
                    "the request may have run: look before sending it again".to_owned(),
                )))
            }
        }
    }
    Ok(Upstream {
        status,
        headers,
        body: Bytes::from(body),
    })
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn denied(client: &str, method: Method, path: &str, reason: String) -> Answer {
    tracing::warn!(client, method = %method, path = %strip_query(path), %reason, "policy refused");
    let mut answer = json_answer(
        StatusCode::FORBIDDEN,
        &refusal_body(
            StatusCode::FORBIDDEN,
            "dfns-signer.policy-denied",
            &format!("the dfns-signer policy of client `{client}` refuses this request: {reason}"),
            "ask the service's operator for a rule; `dfns-signer serve check-policy` shows what \
             the policy says",
            json!({ "client": client, "rule": reason }),
        ),
    );
    answer.headers_mut().insert(
        HeaderName::from_static("x-dfns-signer-refused"),
        HeaderValue::from_static("policy"),
    );
    answer
        .extensions_mut()
        .insert(RefusalId("dfns-signer.policy-denied"));
    answer
}

/// A failure in the user action flow or the signing: Dfns' refusal keeps its status.
fn signing_failed(e: &Error) -> Answer {
    match e.api() {
        Some(api) => {
            let status = StatusCode::from_u16(api.status).unwrap_or(StatusCode::BAD_GATEWAY);
            json_answer(
                status,
                &json!({ "error": {
                    "id": api.id,
                    "status": api.status,
                    "message": api.message,
                    "details": api.details,
                    "fix": "the Dfns API refused the user action: see its message",
                }}),
            )
        }
        None => {
            tracing::error!(error = %e, "signing failed");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "dfns-signer.signing-failed",
                format!("the service could not sign: {e}"),
                "the service's operator should check the key and its device \
                 (`dfns-signer doctor --key URI`)"
                    .to_owned(),
            )
        }
    }
}

fn bad_upstream(what: &str) -> Answer {
    refusal(
        StatusCode::BAD_GATEWAY,
        "dfns-signer.bad-upstream",
        format!("the Dfns API sent something unexpected: {what}"),
        "check [service] upstream points at the Dfns API".to_owned(),
    )
}

/// A Dfns-shaped refusal: `{"error": {"id", "code", "status", "message", "fix", "details"}}`.
fn refusal(status: StatusCode, id: &'static str, message: String, fix: String) -> Answer {
    let mut answer = json_answer(status, &refusal_body(status, id, &message, &fix, json!({})));
    answer.extensions_mut().insert(RefusalId(id));
    answer
}

/// The body of a refusal. `code` repeats `id` and `details` carries `fix` (and `extra`) because
/// the official Python SDK keeps only `message`, `code` and `details` of an error.
fn refusal_body(status: StatusCode, id: &str, message: &str, fix: &str, extra: Value) -> Value {
    let mut details = json!({ "fix": fix });
    if let (Some(details), Value::Object(extra)) = (details.as_object_mut(), &extra) {
        details.extend(extra.clone());
    }
    let mut error = json!({
        "id": id,
        "code": id,
        "status": status.as_u16(),
        "message": message,
        "fix": fix,
        "details": details,
    });
    if let (Some(error), Value::Object(extra)) = (error.as_object_mut(), extra) {
        error.extend(extra);
    }
    json!({ "error": error })
}

fn json_answer(status: StatusCode, value: &Value) -> Answer {
    let body = serde_json::to_vec(value).expect("JSON serialises");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

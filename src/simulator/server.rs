//! Transport: the accept loop, one HTTP/1.1 connection task per client, and the pipeline every
//! request goes through — auth token, user action, faults, endpoint.
//!
//! The loop is hyper's own rather than `axum::serve` because a dropped-connection fault must
//! close the socket without answering: returning an error from the service does exactly that.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::delivery::{deliver, DeliveryResult};
use super::endpoints::{needs_auth_token, needs_user_action};
use super::errors::{json_response, ApiError};
use super::faults::{Fault, FaultState};
use super::request::Req;
use super::state::{Caller, Inner};
use super::util::dfns_id;
use super::webhooks::{self, Delivery};
use super::{permissions, router, user_action};

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// What one simulator allows its clients (`SimulatorBuilder::max_connections`,
/// `SimulatorBuilder::header_read_timeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; further clients wait in the listen backlog.
    pub(crate) max_connections: usize,
    /// How long a client may take to send a request's head before its connection is closed.
    pub(crate) header_read_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_read_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// State shared by all connections. Lock order: `inner`, then `faults`. Not `Debug`: it holds
/// live tokens.
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) faults: Mutex<FaultState>,
}

impl Shared {
    /// Locks the state; a panic in another request must not take the simulator down with it.
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the fault settings.
    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The error that makes hyper close a connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection dropped")
    }
}

impl std::error::Error for DropConnection {}

/// What the pipeline decided.
enum Outcome {
    Reply(Response<Body>),
    Drop,
}

/// Accepts connections until `shutdown` fires (or its sender is dropped); then every open
/// connection is aborted with the `JoinSet`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: Limits,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // A connection is accepted only with a free slot: at the cap, clients wait in the
            // kernel's backlog instead of each costing the simulator a task and buffers.
            Ok(slot) = slots.clone().acquire_owned() => {
                let accepted = tokio::select! {
                    _ = &mut shutdown => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                shared.inner().stats.connections += 1;
                let shared = shared.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    // Errors here are clients going away, slow heads or injected drops: nothing
                    // to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(limits.header_read_timeout)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let latency = {
        let mut inner = shared.inner();
        *inner
            .stats
            .requests
            .entry(router::route_name(&method, &path))
            .or_default() += 1;
        drop(inner);
        shared.faults().faults.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut outcome = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(bytes) => process(
            &shared,
            &parts.headers,
            &method,
            &path,
            parts.uri.query(),
            &bytes,
        ),
        Err(_) => Outcome::Reply(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            )
            .into_response(),
        ),
    };
    // Webhook events the request produced go out now that the state is unlocked: in the
    // background, except a ping's, whose outcome is the answer.
    let deliveries = std::mem::take(&mut shared.inner().outbox);
    for delivery in deliveries {
        if delivery.answers_ping {
            let result = send_and_record(&shared, &delivery).await;
            if matches!(outcome, Outcome::Reply(ref r) if r.status() == StatusCode::OK) {
                outcome = Outcome::Reply(json_response(StatusCode::OK, &ping_answer(&result)));
            }
        } else {
            let shared = shared.clone();
            tokio::spawn(async move { send_and_record(&shared, &delivery).await });
        }
    }
    let mut inner = shared.inner();
    match outcome {
        Outcome::Drop => {
            inner.stats.dropped += 1;
            Err(DropConnection)
        }
        Outcome::Reply(response) => {
            *inner
                .stats
                .statuses
                .entry(response.status().as_u16())
                .or_default() += 1;
            Ok(response)
        }
    }
}

/// Sends one webhook delivery and writes its outcome on the event.
async fn send_and_record(shared: &Shared, delivery: &Delivery) -> DeliveryResult {
    let result = deliver(delivery).await;
    let mut inner = shared.inner();
    match &result {
        Ok((status, _)) => webhooks::record_outcome(&mut inner, delivery, *status, None),
        Err(why) => webhooks::record_outcome(&mut inner, delivery, 0, Some(why)),
    }
    result
}

/// `POST /webhooks/{id}/ping`'s answer: the receiver's status (a string, as Dfns sends it) and
/// body, or `"0"` and why nothing was delivered.
fn ping_answer(result: &DeliveryResult) -> serde_json::Value {
    match result {
        Ok((status, body)) => json!({ "status": status.to_string(), "data": body, "error": "" }),
        Err(why) => json!({ "status": "0", "data": "", "error": why }),
    }
}

/// Auth token → user action → faults → endpoint.
fn process(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Outcome {
    let mut inner = shared.inner();
    let mut req = Req {
        method,
        path,
        query,
        body,
        caller: None,
    };
    let refuse = |inner: &mut Inner, e: ApiError| {
        inner.reject(e.label());
        Outcome::Reply(e.into_response())
    };

    if needs_auth_token(method, path) {
        match authenticate(&inner, headers) {
            Ok(caller) => req.caller = Some(caller),
            Err(e) => return refuse(&mut inner, e),
        }
    }
    // Permissions before the user action: a refused call must not spend it.
    if let Some(caller) = &req.caller {
        if let Err(e) = permissions::check(&inner, caller, &router::route_name(method, path)) {
            return refuse(&mut inner, e);
        }
    }
    if needs_user_action(method, path) {
        let header = headers
            .get("x-dfns-useraction")
            .and_then(|v| v.to_str().ok());
        if let Err(e) = user_action::consume(&mut inner, &req, header) {
            return refuse(&mut inner, e);
        }
    }

    let fault = shared.faults().decide(method, path);
    if fault != Fault::None {
        inner.stats.faults_injected += 1;
    }
    match fault {
        Fault::None => {}
        Fault::Drop => return Outcome::Drop,
        Fault::TooManyRequests { retry_after_secs } => {
            let mut response =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return Outcome::Reply(response);
        }
        Fault::InternalError => {
            return Outcome::Reply(
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                    .into_response(),
            )
        }
        Fault::BadGateway => return Outcome::Reply(gateway_error(StatusCode::BAD_GATEWAY)),
        Fault::GatewayTimeout => return Outcome::Reply(gateway_error(StatusCode::GATEWAY_TIMEOUT)),
        // The endpoint runs (its side effect happens); only the answer is lost.
        Fault::GatewayTimeoutAfter | Fault::DropAfter => {
            if let Err(e) = router::route(&mut inner, &req) {
                return refuse(&mut inner, e);
            }
            return if fault == Fault::DropAfter {
                Outcome::Drop
            } else {
                Outcome::Reply(gateway_error(StatusCode::GATEWAY_TIMEOUT))
            };
        }
        Fault::PolicyPending => {
            let body = json!({
                "id": dfns_id("ap"),
                "status": "Pending",
                "activityId": dfns_id("ac"),
                "kind": policy_activity_kind(path),
                "dateCreated": super::util::now_iso(),
            });
            webhooks::emit(
                &mut inner,
                "policy.approval.pending",
                json!({ "approval": body }),
            );
            return Outcome::Reply(json_response(StatusCode::ACCEPTED, &body));
        }
    }

    match router::route(&mut inner, &req) {
        Ok((status, body)) => Outcome::Reply(json_response(status, &body)),
        Err(e) => refuse(&mut inner, e),
    }
}

/// A gateway's own error answer: a flat body, not Dfns' `{"error":{…}}`.
fn gateway_error(status: StatusCode) -> Response<Body> {
    let message = status.canonical_reason().unwrap_or("Gateway Error");
    json_response(status, &json!({ "message": message }))
}

/// The activity kind a policy approval would name for this path.
fn policy_activity_kind(path: &str) -> &'static str {
    if path.contains("/signatures") {
        "Wallets:Sign"
    } else if path.contains("/transfers") {
        "Wallets:TransferAsset"
    } else if path.starts_with("/wallets") {
        "Wallets:Create"
    } else if path.starts_with("/auth/") {
        "Permissions:Modify"
    } else {
        "Policies:Modify"
    }
}

/// Finds the caller of a request from `Authorization: Bearer <token>`.
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("Authorization header is missing"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not ASCII"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
    // Never echo the token: it is a secret, and errors end up in logs.
    let record = inner
        .tokens
        .get(token)
        .ok_or_else(|| ApiError::unauthorized("unknown auth token"))?;
    if !record.active {
        return Err(ApiError::unauthorized("this auth token was revoked"));
    }
    if record.expires <= std::time::Instant::now() {
        return Err(ApiError::unauthorized("this auth token has expired"));
    }
    let user_active = inner.users.get(&record.user_id).is_some_and(|u| u.active);
    if !user_active {
        return Err(ApiError::unauthorized(
            "the user or service account of this token is deactivated",
        ));
    }
    Ok(Caller {
        user_id: record.user_id.clone(),
        token_id: record.token_id.clone(),
    })
}

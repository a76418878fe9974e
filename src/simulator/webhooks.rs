//! Webhooks: `POST/GET /webhooks`, `GET/PUT/DELETE /webhooks/{id}`, `POST /webhooks/{id}/ping`,
//! `GET /webhooks/{id}/events[/{eventId}]`, in the shapes the official SDKs decode (`dateUpdated`
//! is required by the Rust SDK's types; the `secret` is returned once, at creation), and the
//! events themselves.
//!
//! [`emit`] records an event for every enabled webhook that subscribes to its kind (or `*`) and
//! queues a [`Delivery`]; the server sends it once the request's state lock is released
//! (`delivery.rs`): `POST` of `{id, date, kind, data, timestampSent}` with
//! `X-DFNS-WEBHOOK-SIGNATURE: sha256=<hex HMAC-SHA256(body, secret)>`, as Dfns signs. Only
//! `http://` loopback URLs are delivered to (the simulator is a test tool; anything else is
//! recorded as not delivered, with the reason).

use serde_json::{json, Value};

use super::errors::ApiError;
use super::request::{nonempty_field, ok, opt_str_field, Reply, Req};
use super::state::Inner;
use super::util::{b64url, dfns_id, now_iso, percent_decode, random_bytes, unix_now};
use super::wallets::string_list;

/// Events kept per webhook for `GET /webhooks/{id}/events` (older ones are forgotten).
pub(crate) const EVENTS_KEPT: usize = 100;

/// One event to send to one webhook.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) webhook_id: String,
    pub(crate) event_id: String,
    pub(crate) url: String,
    pub(crate) secret: String,
    /// The exact bytes sent and signed.
    pub(crate) body: String,
    /// Set for `POST /webhooks/{id}/ping`, whose answer is the delivery's outcome.
    pub(crate) answers_ping: bool,
}

/// Records event `kind` with `data` for every enabled webhook subscribed to it and queues its
/// delivery.
pub(crate) fn emit(inner: &mut Inner, kind: &str, data: Value) {
    let targets: Vec<String> = inner
        .webhooks
        .values()
        .filter(|w| w["status"] == "Enabled")
        .filter(|w| {
            w["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e == "*" || e == kind))
        })
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect();
    for webhook_id in targets {
        queue(inner, &webhook_id, kind, data.clone(), false);
    }
}

/// Records one event for one webhook and queues its delivery.
fn queue(inner: &mut Inner, webhook_id: &str, kind: &str, data: Value, answers_ping: bool) {
    let Some(webhook) = inner.webhooks.get(webhook_id) else {
        return;
    };
    let event_id = dfns_id("we");
    let date = now_iso();
    let body = json!({
        "id": event_id,
        "date": date,
        "kind": kind,
        "data": data,
        "timestampSent": unix_now(),
    });
    let delivery = Delivery {
        webhook_id: webhook_id.to_owned(),
        event_id: event_id.clone(),
        url: webhook["url"].as_str().unwrap_or_default().to_owned(),
        secret: webhook["secret"].as_str().unwrap_or_default().to_owned(),
        body: body.to_string(),
        answers_ping,
    };
    let mut record = body;
    record["status"] = Value::from("pending");
    let events = inner
        .webhook_events
        .entry(webhook_id.to_owned())
        .or_default();
    events.push_back(record);
    while events.len() > EVENTS_KEPT {
        events.pop_front();
    }
    inner.outbox.push(delivery);
}

/// Writes a delivery's outcome on its event: the receiver's HTTP status as a string (`"200"`),
/// or `"0"` and `error` when nothing was delivered.
pub(crate) fn record_outcome(
    inner: &mut Inner,
    delivery: &Delivery,
    status: u16,
    error: Option<&str>,
) {
    let Some(events) = inner.webhook_events.get_mut(&delivery.webhook_id) else {
        return;
    };
    if let Some(event) = events.iter_mut().find(|e| e["id"] == *delivery.event_id) {
        event["status"] = Value::from(status.to_string());
        if let Some(error) = error {
            event["error"] = Value::from(error);
        }
    }
}

/// `Enabled` unless the request says `Disabled`.
fn status_field(body: &Value, default: &str) -> Result<String, ApiError> {
    match opt_str_field(body, "status")? {
        None => Ok(default.to_owned()),
        Some(s @ ("Enabled" | "Disabled")) => Ok(s.to_owned()),
        Some(other) => Err(ApiError::bad_request(format!(
            "webhook status {other:?} is not Enabled or Disabled"
        ))),
    }
}

/// The stored webhook `raw_id` names, or 404 as Dfns answers.
fn webhook_mut<'i>(inner: &'i mut Inner, raw_id: &str) -> Result<&'i mut Value, ApiError> {
    let id = percent_decode(raw_id).unwrap_or_default();
    inner
        .webhooks
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("webhook not found"))
}

/// A webhook as `GET` shows it: without its secret.
fn public(entity: &Value) -> Value {
    let mut entity = entity.clone();
    if let Some(map) = entity.as_object_mut() {
        map.remove("secret");
    }
    entity
}

/// `POST /webhooks` `{url, events, description?, status?}`: the entity with its `secret`.
pub(crate) fn create(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let url = nonempty_field(&body, "url")?;
    let events = string_list(&body, "events", true)?;
    let status = status_field(&body, "Enabled")?;
    let id = dfns_id("wh");
    let now = now_iso();
    let entity = json!({
        "id": id,
        "url": url,
        "events": events,
        "description": body.get("description").cloned().unwrap_or(Value::from("")),
        "status": status,
        "dateCreated": now,
        "dateUpdated": now,
        "secret": format!("whsec_{}", b64url(&random_bytes(24))),
    });
    inner.webhooks.insert(id, entity.clone());
    ok(entity)
}

/// `GET /webhooks`: `{items, nextPageToken}`.
pub(crate) fn list(inner: &mut Inner) -> Reply {
    let items: Vec<Value> = inner.webhooks.values().map(public).collect();
    ok(json!({ "items": items, "nextPageToken": null }))
}

/// `GET /webhooks/{id}`.
pub(crate) fn get(inner: &mut Inner, raw_id: &str) -> Reply {
    ok(public(webhook_mut(inner, raw_id)?))
}

/// `PUT /webhooks/{id}` `{url?, events?, description?, status?}`.
pub(crate) fn update(inner: &mut Inner, req: &Req<'_>, raw_id: &str) -> Reply {
    let body = req.json()?;
    let entity = webhook_mut(inner, raw_id)?;
    if let Some(url) = opt_str_field(&body, "url")? {
        entity["url"] = Value::from(url);
    }
    if body.get("events").is_some() {
        entity["events"] = json!(string_list(&body, "events", true)?);
    }
    if let Some(description) = opt_str_field(&body, "description")? {
        entity["description"] = Value::from(description);
    }
    let status = status_field(&body, entity["status"].as_str().unwrap_or("Enabled"))?;
    entity["status"] = Value::from(status);
    entity["dateUpdated"] = Value::from(now_iso());
    ok(public(entity))
}

/// `POST /webhooks/{id}/ping`: sends a `webhook.ping` event now; the server answers with the
/// delivery's outcome (`{status, data, error}`) once it is known.
pub(crate) fn ping(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = webhook_mut(inner, raw_id)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    queue(inner, &id, "webhook.ping", json!({}), true);
    // Replaced by the delivery's outcome (server.rs); this is what a lost race would show.
    ok(json!({ "status": "0", "data": "", "error": "not delivered yet" }))
}

/// `GET /webhooks/{id}/events`: `{items, nextPageToken}`, newest first.
pub(crate) fn list_events(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = webhook_mut(inner, raw_id)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let items: Vec<Value> = inner
        .webhook_events
        .get(&id)
        .map(|events| events.iter().rev().cloned().collect())
        .unwrap_or_default();
    ok(json!({ "items": items, "nextPageToken": null }))
}

/// `GET /webhooks/{id}/events/{eventId}`.
pub(crate) fn get_event(inner: &mut Inner, raw_id: &str, raw_event_id: &str) -> Reply {
    let id = webhook_mut(inner, raw_id)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let event_id = percent_decode(raw_event_id).unwrap_or_default();
    inner
        .webhook_events
        .get(&id)
        .and_then(|events| events.iter().find(|e| e["id"] == *event_id.as_str()))
        .cloned()
        .ok_or_else(|| ApiError::not_found("webhook event not found"))
        .and_then(ok)
}

/// `DELETE /webhooks/{id}`: `{"deleted": true}`, as Dfns documents it and the TypeScript SDK
/// types it (dfns-sdk-rust 0.3.2 types `deleted` as a string and so fails to decode Dfns'
/// answer; `tests/dfns_sdk_adapter.rs` pins that).
pub(crate) fn delete(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = percent_decode(raw_id).unwrap_or_default();
    inner
        .webhooks
        .remove(&id)
        .ok_or_else(|| ApiError::not_found("webhook not found"))?;
    inner.webhook_events.remove(&id);
    ok(json!({ "deleted": true }))
}

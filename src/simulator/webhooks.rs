//! Webhooks: `POST/GET /webhooks`, `GET/PUT/DELETE /webhooks/{id}` and `POST /webhooks/{id}/ping`,
//! in the shapes the official SDKs decode (`dateUpdated` is required by the Rust SDK's types; the
//! `secret` is returned once, at creation). Events are not delivered yet: `ping` says so.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::request::{nonempty_field, ok, opt_str_field, Reply, Req};
use super::state::Inner;
use super::util::{b64url, dfns_id, now_iso, percent_decode, random_bytes};
use super::wallets::string_list;

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

/// `POST /webhooks/{id}/ping`: the simulator delivers nothing yet, and says so.
pub(crate) fn ping(inner: &mut Inner, raw_id: &str) -> Reply {
    webhook_mut(inner, raw_id)?;
    ok(
        json!({ "status": "200", "data": "", "error": "", "note": "the simulator does not deliver webhooks" }),
    )
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
    ok(json!({ "deleted": true }))
}

//! One request as handlers see it (raw path, raw body bytes, the authenticated caller) and the
//! JSON-reading helpers that turn malformed input into 400s with a clear message.

use axum::http::StatusCode;
use serde_json::Value;

use super::errors::ApiError;
use super::state::Caller;

/// What a handler answers: a status and a JSON body.
pub(crate) type Reply = Result<(StatusCode, Value), ApiError>;

/// A request after transport: method, raw path (percent-encoded, as sent), query and body.
#[derive(Debug)]
pub(crate) struct Req<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) body: &'a [u8],
    pub(crate) caller: Option<Caller>,
}

impl Req<'_> {
    /// The body as a JSON object; an empty body reads as `{}`.
    pub(crate) fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        let value: Value = serde_json::from_slice(self.body).map_err(|e| {
            ApiError::bad_request("request body is not valid JSON").because(e.to_string())
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        Ok(value)
    }

    /// The authenticated caller (every route that reaches a handler without one is public).
    pub(crate) fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("this endpoint needs an auth token"))
    }

    /// A query parameter, percent-decoded.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A required string field.
pub(crate) fn str_field<'v>(body: &'v Value, name: &str) -> Result<&'v str, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a string"))),
        None => Err(ApiError::bad_request(format!("`{name}` is required"))),
    }
}

/// A required non-empty string field.
pub(crate) fn nonempty_field<'v>(body: &'v Value, name: &str) -> Result<&'v str, ApiError> {
    let s = str_field(body, name)?;
    if s.is_empty() {
        return Err(ApiError::bad_request(format!("`{name}` must not be empty")));
    }
    Ok(s)
}

/// An optional string field (absent or null → `None`; another type → 400).
pub(crate) fn opt_str_field<'v>(body: &'v Value, name: &str) -> Result<Option<&'v str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a string"))),
    }
}

/// An ok reply.
pub(crate) fn ok(body: Value) -> Reply {
    Ok((StatusCode::OK, body))
}

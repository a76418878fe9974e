//! Error responses in Dfns' shape: `{"error":{"id","status","message","details"}}`.
//!
//! Statuses are the ones Dfns documents for each refusal. Of the messages, only
//! [`USER_ACTION_INVALID`] is Dfns' documented wording; every other message is the simulator's
//! own, and the README's "Simulator error messages" table says so, so no one mistakes it for
//! Dfns' (clients should branch on status, not on message text). `details.reason` says exactly
//! what was wrong, which Dfns does not always do but which makes a failing test easy to read.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

/// A user action missing, unknown or not matching the request (403), or an assertion that does
/// not verify (401). Dfns' documented wording: its API reference gives this message for the
/// 403 of user action signing, and the official SDK's transcripts
/// (`tests/fixtures/transcripts/signer_algorithm_sha512_p256.json`) show it.
pub(crate) const USER_ACTION_INVALID: &str = "user action signature is missing or invalid";
/// A user action token presented a second time (400, the status Dfns documents). The
/// simulator's own wording.
pub(crate) const USER_ACTION_USED: &str = "user action has already been used";
/// An unknown, expired or already answered challenge (400). The simulator's own wording (the
/// one the fake server of `tests/fixtures/transcripts/user_action_replay_rejected.json` used).
pub(crate) const CHALLENGE_INVALID: &str = "Challenge token is not valid.";

/// A refused request.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

impl ApiError {
    /// An error with a status and a message.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    /// Adds a human-readable explanation under `details.reason`.
    pub(crate) fn because(mut self, reason: impl Into<String>) -> Self {
        self.details = Some(json!({ "reason": reason.into() }));
        self
    }

    /// 400 with a validation message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: the auth token is missing, unknown or revoked.
    pub(crate) fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized").because(reason)
    }

    /// 404 for an entity or a route.
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 409: idempotency or uniqueness conflict.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// The challenge cannot be used (400, Dfns' message).
    pub(crate) fn challenge_invalid(reason: impl Into<String>) -> Self {
        Self::bad_request(CHALLENGE_INVALID).because(reason)
    }

    /// The user action is missing or does not match (403 on the real request).
    pub(crate) fn user_action_invalid(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, USER_ACTION_INVALID).because(reason)
    }

    /// 403 for a call the caller's permissions do not allow; `reason` names the operation.
    /// The message is the simulator's own (Dfns' wording for this refusal is not documented).
    pub(crate) fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden").because(reason)
    }

    /// The assertion on `/auth/action` (or `/auth/login`) does not verify: 401, as in the
    /// `signer_algorithm_sha512_p256` transcript.
    pub(crate) fn assertion_invalid(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, USER_ACTION_INVALID).because(reason)
    }

    /// Short label for statistics: status and message.
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.status.as_u16(), self.message)
    }

    /// The HTTP response.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut error = json!({
            "id": crate::simulator::util::error_id(),
            "status": self.status.as_u16(),
            "message": self.message,
        });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        json_response(self.status, &json!({ "error": error }))
    }
}

/// A JSON response with `content-type: application/json`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

//! The request body, serialized once.
//!
//! The user action signs the body's exact bytes and the server checks the request against them,
//! so the body is turned into text exactly once, and that text is both the signed
//! `userActionPayload` and the bytes sent. JSON is compact with keys in insertion order and
//! escaping as `JSON.stringify` does it (the official SDK's form).

use serde::Serialize;

use crate::error::ProtocolError;

/// A request body as the bytes that will be signed and sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload(String);

impl Payload {
    /// No body: the payload is `""` and nothing is sent.
    pub fn empty() -> Self {
        Payload(String::new())
    }

    /// Serializes a value as compact JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, ProtocolError> {
        serde_json::to_string(value)
            .map(Payload)
            .map_err(|e| ProtocolError::Body(e.to_string()))
    }

    /// Takes JSON text as it is, byte for byte (after checking it is JSON), for callers whose
    /// bytes must not change (numbers like `1e+21` that a round trip would respell).
    pub fn raw_json(text: impl Into<String>) -> Result<Self, ProtocolError> {
        let text = text.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| ProtocolError::Body(format!("not valid JSON: {e}")))?;
        Ok(Payload(text))
    }

    /// The text to sign and send.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether there is no body.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

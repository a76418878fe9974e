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

    /// The text, given up (to be sent without a copy).
    #[cfg(feature = "client")]
    pub(crate) fn into_string(self) -> String {
        self.0
    }

    /// Whether there is no body.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same JSON object body with `"externalId": id` added (Dfns' idempotency key: a second
    /// request with the same `externalId` returns the first one's result instead of acting
    /// again, which is what makes retrying a creation safe). Fails when the body is not a JSON
    /// object or already carries another `externalId`.
    pub fn with_external_id(self, id: &str) -> Result<Self, ProtocolError> {
        if id.is_empty() {
            return Err(ProtocolError::Body(
                "an empty externalId deduplicates nothing".into(),
            ));
        }
        let mut value: serde_json::Value = if self.0.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&self.0).map_err(|e| ProtocolError::Body(e.to_string()))?
        };
        let object = value.as_object_mut().ok_or_else(|| {
            ProtocolError::Body("an externalId can only be added to a JSON object body".into())
        })?;
        match object.get("externalId") {
            Some(serde_json::Value::String(existing)) if existing == id => return Ok(self),
            Some(_) => {
                return Err(ProtocolError::Body(
                    "the body already carries another externalId".into(),
                ))
            }
            None => {}
        }
        object.insert("externalId".into(), id.into());
        Payload::json(&value)
    }

    /// The body's top-level `externalId`, when it is a non-empty string.
    pub fn external_id(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "externalId")]
            external_id: Option<serde_json::Value>,
        }
        if !self.0.trim_start().starts_with('{') {
            return None;
        }
        match serde_json::from_str::<Probe>(&self.0).ok()?.external_id? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_id_is_added_at_the_end_and_read_back() {
        let p = Payload::json(&serde_json::json!({"network": "EthereumSepolia", "name": "w"}))
            .unwrap()
            .with_external_id("order-42")
            .unwrap();
        assert_eq!(
            p.as_str(),
            r#"{"network":"EthereumSepolia","name":"w","externalId":"order-42"}"#
        );
        assert_eq!(p.external_id().as_deref(), Some("order-42"));
        // The same id again changes nothing; another one is refused.
        assert_eq!(p.clone().with_external_id("order-42").unwrap(), p);
        assert!(p.with_external_id("order-43").is_err());
        assert!(Payload::raw_json("[1]")
            .unwrap()
            .with_external_id("x")
            .is_err());
        assert!(Payload::empty().with_external_id("").is_err());
        assert_eq!(
            Payload::empty().with_external_id("x").unwrap().as_str(),
            r#"{"externalId":"x"}"#
        );
        assert_eq!(
            Payload::raw_json(r#"{"externalId":""}"#)
                .unwrap()
                .external_id(),
            None
        );
        assert_eq!(Payload::empty().external_id(), None);
    }
}

//! Dfns error bodies, in both shapes the API uses:
//! `{"error":{"id","status","message","details"}}` and the flat `{"message","details"}`.
//! Anything else (an HTML page from a proxy, `upstream exploded`) keeps its first bytes as the
//! message, so the caller still learns what came back.

use serde::Deserialize;

use crate::error::ApiError;

const MAX_RAW_MESSAGE: usize = 200;

#[derive(Deserialize)]
struct Nested {
    error: Flat,
}

#[derive(Deserialize)]
struct Flat {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

/// Reads an error response body.
pub fn parse_error_body(status: u16, body: &[u8]) -> ApiError {
    let flat = serde_json::from_slice::<Nested>(body)
        .map(|n| n.error)
        .or_else(|_| serde_json::from_slice::<Flat>(body))
        .ok()
        .filter(|f| f.message.is_some() || f.id.is_some());
    match flat {
        Some(f) => ApiError {
            status,
            message: f.message.unwrap_or_else(|| "(no message)".to_owned()),
            id: f.id.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            details: f.details.filter(|d| !d.is_null()),
            retry_after: None,
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                "(empty body)".to_owned()
            } else if text.chars().count() > MAX_RAW_MESSAGE {
                format!(
                    "{}…",
                    text.chars().take(MAX_RAW_MESSAGE).collect::<String>()
                )
            } else {
                text.to_owned()
            };
            ApiError {
                status,
                message,
                id: None,
                details: None,
                retry_after: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_flat_and_raw_bodies() {
        let e = parse_error_body(
            429,
            br#"{"error":{"id":"1795480827223","status":429,"message":"Too Many Requests","details":{"a":1}}}"#,
        );
        assert_eq!(
            (e.status, e.message.as_str(), e.id.as_deref()),
            (429, "Too Many Requests", Some("1795480827223"))
        );
        assert_eq!(e.details, Some(serde_json::json!({"a":1})));

        let e = parse_error_body(400, br#"{"message":"bad input","details":[1]}"#);
        assert_eq!((e.message.as_str(), e.id), ("bad input", None));
        assert_eq!(e.details, Some(serde_json::json!([1])));

        let e = parse_error_body(500, b"upstream exploded");
        assert_eq!(e.message, "upstream exploded");

        let e = parse_error_body(502, b"");
        assert_eq!(e.message, "(empty body)");

        let long = "x".repeat(1000);
        assert!(parse_error_body(500, long.as_bytes()).message.len() < 300);

        // JSON that is not an error body falls back to the raw text.
        let e = parse_error_body(500, br#"{"unexpected":true}"#);
        assert_eq!(e.message, r#"{"unexpected":true}"#);
    }
}

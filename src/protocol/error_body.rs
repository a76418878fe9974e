//! Dfns error bodies, in both shapes the API uses:
//! `{"error":{"id","status","message","details"}}` and the flat `{"message","details"}`.
//! Anything else (an HTML page from a proxy, `upstream exploded`) keeps its first bytes as the
//! message, so the caller still learns what came back.

use serde::Deserialize;

use crate::error::{sanitize_text, ApiError};

/// The most of a non-JSON body kept as the message.
const MAX_RAW_MESSAGE: usize = 200;
/// The most of a server's `message` (or error id) kept: enough for any real Dfns message.
const MAX_MESSAGE: usize = 500;

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
        // Messages reach terminals and logs: control characters (escape sequences, forged log
        // lines) become spaces, and length is capped.
        Some(f) => ApiError {
            status,
            message: f.message.map_or_else(
                || "(no message)".to_owned(),
                |m| sanitize_text(&m, MAX_MESSAGE),
            ),
            id: f.id.map(|v| match v {
                serde_json::Value::String(s) => sanitize_text(&s, 100),
                other => sanitize_text(&other.to_string(), 100),
            }),
            details: f.details.filter(|d| !d.is_null()),
            retry_after: None,
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                sanitize_text(text, MAX_RAW_MESSAGE)
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

    #[test]
    fn hostile_messages_are_defanged_and_capped() {
        // An escape sequence that would recolour a terminal, and a newline that would forge a
        // second log line.
        let e = parse_error_body(
            403,
            "{\"message\":\"denied\\u001b[2J\\nERROR forged line\",\"id\":\"x\\ny\"}".as_bytes(),
        );
        assert_eq!(e.message, "denied [2J ERROR forged line");
        assert_eq!(e.id.as_deref(), Some("x y"));
        let long = format!(r#"{{"message":"{}"}}"#, "m".repeat(100_000));
        let e = parse_error_body(400, long.as_bytes());
        assert_eq!(
            e.message.chars().count(),
            501,
            "500 characters and an ellipsis"
        );
        let e = parse_error_body(502, b"<html>\x1b[31mproxy\r\nerror</html>");
        assert!(!e.message.chars().any(char::is_control), "{:?}", e.message);
    }
}

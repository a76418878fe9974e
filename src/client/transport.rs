//! One HTTP exchange: headers, body bytes, status handling, error mapping.
//!
//! The auth token goes only into the `Authorization` header, never into a URL, a log line or an
//! error; the header is built in a buffer that is zeroized after use. Error bodies are read in
//! both Dfns shapes; a 202 is a pending policy, not a success. Bodies are read in chunks up to
//! the client's cap, after a look at `Content-Length`, so a hostile server cannot fill memory.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{DfnsClient, Outcome, PolicyPending, RawResponse};
use crate::error::{ClientError, Error};
use crate::protocol::parse_error_body;
use crate::protocol::Method;

const USER_ACTION_HEADER: &str = "x-dfns-useraction";

impl DfnsClient {
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
        user_action: Option<&SecretString>,
    ) -> Result<Outcome<RawResponse>, Error> {
        let url = format!("{}{}", self.inner.base, path);
        let reqwest_method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut request = self.inner.http.request(reqwest_method, &url);
        if let Some(token) = &self.inner.auth_token {
            let secret = token.expose_secret();
            let mut value = Zeroizing::new(String::with_capacity(7 + secret.len()));
            // Writing to a String cannot fail.
            let _ = write!(value, "Bearer {secret}");
            request = request.header(AUTHORIZATION, secret_header(&value)?);
        }
        if let Some(token) = user_action {
            request = request.header(USER_ACTION_HEADER, secret_header(token.expose_secret())?);
        }
        if !body.is_empty() {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(method, path, &url, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let server_date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let limit = self.inner.max_response_bytes;
        let too_large = || {
            Error::from(ClientError::ResponseTooLarge {
                method: method.to_string(),
                path: crate::protocol::strip_query(path).to_owned(),
                limit,
            })
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(
            response
                .content_length()
                .map_or(0, |n| n as usize)
                .min(64 * 1024),
        );
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(method, path, &url, e))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        tracing::debug!(status, bytes = bytes.len(), "response");
        match status {
            202 => Ok(Outcome::PolicyPending(PolicyPending {
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            })),
            200..=299 => Ok(Outcome::Done(RawResponse {
                status,
                body: bytes,
                server_date,
            })),
            _ => {
                let mut error = parse_error_body(status, &bytes);
                error.retry_after = retry_after;
                Err(error.into())
            }
        }
    }

    fn transport_error(&self, method: Method, path: &str, url: &str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return ClientError::Timeout {
                method: method.to_string(),
                path: path.to_owned(),
                seconds: self.inner.timeout.as_secs(),
            }
            .into();
        }
        // A refused connection provably never delivered the request: safe to send again.
        let never_sent = e.is_connect();
        // `without_url` keeps reqwest from repeating the URL; the cause chain says why.
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        ClientError::Transport {
            url: url.to_owned(),
            reason,
            never_sent,
        }
        .into()
    }
}

/// A header value marked sensitive, so `reqwest`/`http` never print it in `Debug`.
fn secret_header(value: &str) -> Result<HeaderValue, Error> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        Error::from(ClientError::Config(
            "a token contains characters not allowed in an HTTP header".to_owned(),
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

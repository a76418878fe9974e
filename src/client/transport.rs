//! One HTTP exchange: headers, body bytes, status handling, error mapping.
//!
//! The auth token goes only into the `Authorization` header, never into a URL, a log line or an
//! error; the header is built in a buffer that is zeroized after use. Error bodies are read in
//! both Dfns shapes; a 202 is a pending policy, not a success. Bodies are read in chunks up to
//! the client's cap, after a look at `Content-Length`, so a hostile server cannot fill memory.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{DfnsClient, Outcome, PolicyPending, RawResponse};
use crate::error::{ClientError, Error};
use crate::protocol::parse_error_body;
use crate::protocol::Method;

const USER_ACTION_HEADER: &str = "x-dfns-useraction";

/// A canned server: the method, the path (with its query) and the body of a request, to the
/// status and body of its answer. See [`DfnsClientBuilder::in_memory_transport`](super::DfnsClientBuilder::in_memory_transport).
pub(super) type Responder = dyn Fn(Method, &str, &[u8]) -> (u16, Vec<u8>) + Send + Sync;

/// Where requests go: HTTP, or a function answering at once (benches and tests measuring and
/// checking the library without a network or a server). Everything around the exchange —
/// headers, body cap, status sorting, errors — is the same code for both.
#[derive(Clone)]
pub(super) enum Transport {
    Reqwest(reqwest::Client),
    InMemory(Arc<Responder>),
}

/// What came back, before it is sorted by status.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    server_date: Option<std::time::SystemTime>,
    body: Vec<u8>,
}

impl DfnsClient {
    /// One exchange. `body` is moved into the request as it is: the bytes signed are the bytes
    /// sent, and no copy is made on the way.
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        body: String,
        user_action: Option<&SecretString>,
    ) -> Result<Outcome<RawResponse>, Error> {
        let authorization = match &self.inner.auth_token {
            Some(token) => {
                let secret = token.expose_secret();
                let mut value = Zeroizing::new(String::with_capacity(7 + secret.len()));
                // Writing to a String cannot fail.
                let _ = write!(value, "Bearer {secret}");
                Some(secret_header(&value)?)
            }
            None => None,
        };
        let user_action = user_action
            .map(|token| secret_header(token.expose_secret()))
            .transpose()?;
        let limit = self.inner.max_response_bytes;
        let too_large = || {
            Error::from(ClientError::ResponseTooLarge {
                method: method.to_string(),
                path: crate::protocol::strip_query(path).to_owned(),
                limit,
            })
        };
        let answer = match &self.inner.transport {
            Transport::Reqwest(http) => {
                let exchange = Exchange {
                    method,
                    path,
                    body,
                    authorization,
                    user_action,
                };
                self.over_http(http, exchange, limit, too_large).await?
            }
            Transport::InMemory(respond) => {
                let (status, body) = respond(method, path, body.as_bytes());
                if body.len() > limit {
                    return Err(too_large());
                }
                Answer {
                    status,
                    retry_after: None,
                    server_date: None,
                    body,
                }
            }
        };
        let Answer {
            status,
            retry_after,
            server_date,
            body: bytes,
        } = answer;
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

    async fn over_http(
        &self,
        http: &reqwest::Client,
        exchange: Exchange<'_>,
        limit: usize,
        too_large: impl Fn() -> Error,
    ) -> Result<Answer, Error> {
        let Exchange {
            method,
            path,
            body,
            authorization,
            user_action,
        } = exchange;
        let url = format!("{}{}", self.inner.base, path);
        let reqwest_method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut request = http.request(reqwest_method, &url);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(value) = user_action {
            request = request.header(USER_ACTION_HEADER, value);
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
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
        Ok(Answer {
            status,
            retry_after,
            server_date,
            body: bytes,
        })
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

/// A request on its way to HTTP.
struct Exchange<'a> {
    method: Method,
    path: &'a str,
    body: String,
    authorization: Option<HeaderValue>,
    user_action: Option<HeaderValue>,
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

//! One HTTP exchange: headers, body bytes, status handling, error mapping.
//!
//! Requests go over this crate's own HTTP/1.1 client ([`super::http1`]), or over reqwest when a
//! proxy or the caller's reqwest client is configured, or to an in-memory responder.
//!
//! The auth token goes only into the `Authorization` header, never into a URL, a log line or an
//! error; the header is built in a buffer that is zeroized after use. Error bodies are read in
//! both Dfns shapes; a 202 is a pending policy, not a success. Bodies are read in chunks up to
//! the client's cap, after a look at `Content-Length`, so a hostile server cannot fill memory.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};

use super::http1::{self, Http1};
use super::{DfnsClient, Outcome, PolicyPending, RawResponse};
use crate::error::{ClientError, Error};
use crate::protocol::parse_error_body;
use crate::protocol::Method;

const USER_ACTION_HEADER: HeaderName = HeaderName::from_static("x-dfns-useraction");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A canned server: the method, the path (with its query) and the body of a request, to the
/// status and body of its answer. See [`DfnsClientBuilder::in_memory_transport`](super::DfnsClientBuilder::in_memory_transport).
pub(super) type Responder = dyn Fn(Method, &str, &[u8]) -> (u16, Vec<u8>) + Send + Sync;

/// Where requests go: HTTP, or a function answering at once (benches and tests measuring and
/// checking the library without a network or a server). Everything around the exchange —
/// headers, body cap, status sorting, errors — is the same code for both.
#[derive(Clone)]
pub(super) enum Transport {
    /// The lean HTTP/1.1 client: the default.
    Direct(Arc<Http1>),
    /// reqwest: with a proxy, or the caller's own client.
    Reqwest(Http),
    InMemory(Arc<Responder>),
}

impl Transport {
    /// HTTP with `client` to `base`: the base URL as the builder checked it (no query, no
    /// fragment, no userinfo, its path without a trailing `/`).
    pub(super) fn http(client: reqwest::Client, base: &url::Url) -> Transport {
        Transport::Reqwest(Http {
            client,
            prefix: base.path().trim_end_matches('/').to_owned(),
            base: base.clone(),
        })
    }
}

/// reqwest, and the base URL parsed once: each request's URL is the base with its path and
/// query set, not the whole string parsed again (a third of what reqwest spends on a request
/// before it reaches hyper went into parsing the same scheme and host every time).
#[derive(Clone)]
pub(super) struct Http {
    client: reqwest::Client,
    base: url::Url,
    /// The base URL's path (a proxy's `/dfns`), without its trailing `/`; often empty.
    prefix: String,
}

impl Http {
    /// `base` + `path` (an API path with its query): the URL `Url::parse` would make of the
    /// two strings joined, built without parsing the scheme and host again. `None` for a path
    /// the shortcut is not known to treat exactly as `Url::parse` does (not starting with `/`,
    /// holding `#` or `\`; `validate_path` lets none through), which then takes the long way.
    fn url(&self, path: &str) -> Option<url::Url> {
        if !path.starts_with('/') || path.contains(['#', '\\']) {
            return None;
        }
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let mut url = self.base.clone();
        if self.prefix.is_empty() {
            url.set_path(path);
        } else {
            let mut full = String::with_capacity(self.prefix.len() + path.len());
            full.push_str(&self.prefix);
            full.push_str(path);
            url.set_path(&full);
        }
        url.set_query(query);
        Some(url)
    }
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
        let authorization = self.inner.authorization.as_ref().map(|v| v.expose_secret());
        let user_action = user_action.map(|t| t.expose_secret());
        for value in authorization.iter().chain(&user_action) {
            check_header_value(value)?;
        }
        let limit = self.inner.max_response_bytes;
        let too_large = || {
            Error::from(ClientError::ResponseTooLarge {
                method: method.to_string(),
                path: crate::protocol::strip_query(path).to_owned(),
                limit,
            })
        };
        let answer = match &self.inner.transport {
            Transport::Direct(http) => {
                let request = http1::Request {
                    method,
                    path,
                    authorization,
                    user_action,
                    body: body.as_bytes(),
                };
                match tokio::time::timeout(self.inner.timeout, http.exchange(&request, limit)).await
                {
                    Err(_elapsed) => return Err(self.timeout_error(method, path)),
                    Ok(Err(http1::Failure::TooLarge)) => return Err(too_large()),
                    Ok(Err(failure)) => return Err(self.direct_error(path, failure)),
                    Ok(Ok(response)) => Answer {
                        status: response.status,
                        retry_after: response.retry_after,
                        server_date: response.date,
                        body: response.body,
                    },
                }
            }
            Transport::Reqwest(http) => {
                let exchange = Exchange {
                    method,
                    path,
                    body,
                    authorization: authorization.map(secret_header),
                    user_action: user_action.map(secret_header),
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
        http: &Http,
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
        let reqwest_method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        // The request as `RequestBuilder` would build it (the same headers, appended in the
        // same order), without its conversions: the URL from the parsed base, the header
        // names and `Content-Type` constant.
        let mut request = match http.url(path) {
            Some(url) => reqwest::Request::new(reqwest_method, url),
            None => http
                .client
                .request(reqwest_method, format!("{}{}", self.inner.base, path))
                .build()
                .map_err(|e| self.transport_error(method, path, e))?,
        };
        let headers = request.headers_mut();
        if let Some(value) = authorization {
            headers.append(AUTHORIZATION, value);
        }
        if let Some(value) = user_action {
            headers.append(USER_ACTION_HEADER, value);
        }
        if !body.is_empty() {
            headers.append(CONTENT_TYPE, APPLICATION_JSON);
            *request.body_mut() = Some(body.into());
        }
        let mut response = http
            .client
            .execute(request)
            .await
            .map_err(|e| self.transport_error(method, path, e))?;
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
            .map_err(|e| self.transport_error(method, path, e))?
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

    fn timeout_error(&self, method: Method, path: &str) -> Error {
        ClientError::Timeout {
            method: method.to_string(),
            path: path.to_owned(),
            seconds: self.inner.timeout.as_secs(),
        }
        .into()
    }

    /// A failure of the HTTP/1.1 client, with the URL it was for.
    fn direct_error(&self, path: &str, failure: http1::Failure) -> Error {
        let (reason, never_sent) = match failure {
            http1::Failure::Connect(reason) => (reason, true),
            http1::Failure::Exchange(reason) => (reason, false),
            // `send` answers it as `ResponseTooLarge` before coming here.
            http1::Failure::TooLarge => {
                ("the answer is larger than the body cap".to_owned(), false)
            }
        };
        ClientError::Transport {
            url: format!("{}{}", self.inner.base, path),
            reason,
            never_sent,
        }
        .into()
    }

    fn transport_error(&self, method: Method, path: &str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return self.timeout_error(method, path);
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
            url: format!("{}{}", self.inner.base, path),
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

/// Refuses a token that could not go in an HTTP header as it is: only visible ASCII, spaces and
/// tabs pass (stricter than `HeaderValue::from_str`, which also takes bytes from 0x80), so no CR
/// or LF can end the header early.
fn check_header_value(value: &str) -> Result<(), Error> {
    // A fold, not `all`: no early exit, so it runs as a vector loop over the ~1 KB tokens.
    let allowed = value.bytes().fold(true, |ok, b| {
        ok & ((b == b'\t') | (0x20..0x7f).contains(&b))
    });
    if allowed {
        Ok(())
    } else {
        Err(ClientError::Config(
            "a token contains characters not allowed in an HTTP header".to_owned(),
        )
        .into())
    }
}

/// A header value (checked by [`check_header_value`]) marked sensitive, so `reqwest`/`http`
/// never print it in `Debug`.
fn secret_header(value: &str) -> HeaderValue {
    let mut header = HeaderValue::from_str(value).expect("checked by check_header_value");
    header.set_sensitive(true);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The base as `DfnsClientBuilder::build` keeps it: its path without the trailing `/`.
    fn http(base: &str) -> (Http, String) {
        let mut url = url::Url::parse(base).unwrap();
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        let joined_base = url.as_str().trim_end_matches('/').to_owned();
        let Transport::Reqwest(http) = Transport::http(reqwest::Client::new(), &url) else {
            unreachable!()
        };
        (http, joined_base)
    }

    /// A token that could end its header early (CR, LF) or carry other control bytes is
    /// refused before anything is sent, and the refusal does not repeat it.
    #[test]
    fn tokens_that_cannot_be_header_values_are_refused_without_being_shown() {
        check_header_value("Bearer eyJ.abc-_~+/= \t!").unwrap();
        for bad in [
            "s3cr3t\r\nx-evil: 1",
            "s3cr3t\n",
            "s3cr3t\0",
            "s3cr3t\x7f",
            "s3cr3t\u{e9}",
        ] {
            let err = check_header_value(bad).unwrap_err().to_string();
            assert!(err.contains("not allowed in an HTTP header"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    /// The URL built from the parsed base is the one `Url::parse` makes of base + path, byte for
    /// byte, for every character `validate_path` lets through, with and without a query, a
    /// base path, a port, an IPv6 host; and the paths it is not sure of take the long way.
    #[test]
    fn request_urls_are_what_parsing_the_joined_string_gives() {
        let bases = [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "https://api.dfns.io",
            "https://API.dfns.io:443/",
            "https://proxy.example/dfns/",
            "https://proxy.example/a/b",
            "http://[::1]:3000/x/",
            "http://localhost",
        ];
        let paths = [
            "/",
            "/wallets",
            "/wallets/",
            "/wallets/wa-01/transactions",
            "/wallets?limit=10&paginationToken=abc",
            "/wallets?",
            "/wallets?a=1?b=2",
            "/auth/action/init",
            "/a%2Fb/c%25d/%5C",
            "/x-._~!$&'()*+,;=:@y",
            "/q?x-._~!$&'()*+,;=:@/?%20",
            "//double",
            "/trailing//",
        ];
        for base in bases {
            let (http, joined_base) = http(base);
            for path in paths {
                let expected = url::Url::parse(&format!("{joined_base}{path}")).unwrap();
                let built = http.url(path).unwrap();
                assert_eq!(built.as_str(), expected.as_str(), "{base} + {path}");
                assert_eq!(built, expected, "{base} + {path}");
            }
            for odd in ["wallets", "/a#b", "/a\\b", ""] {
                assert!(http.url(odd).is_none(), "{odd}");
            }
        }
    }
}

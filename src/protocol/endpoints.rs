//! Which requests need a user action, and how request paths are written.
//!
//! The rule (docs/protocol.md §3): no `GET` needs one; every `POST`, `PUT`, `PATCH` and `DELETE`
//! does, except about thirty auth, login, registration, quote and proxy endpoints. Known endpoints
//! are looked up in a table of all 273 endpoints the official SDKs know; an endpoint missing from
//! the table follows the rule, erring on the side of signing (a needless user action costs a round
//! trip; a missing one costs a 403).

use std::fmt;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::endpoint_table::ENDPOINTS;
use crate::error::ProtocolError;

/// An HTTP method the Dfns API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method's name as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => {
                return Err(ProtocolError::InvalidPath {
                    path: s.to_owned(),
                    reason: "unknown HTTP method; expected GET, POST, PUT, PATCH or DELETE"
                        .to_owned(),
                })
            }
        })
    }
}

/// What the endpoint table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointInfo {
    /// Whether the request needs an `X-DFNS-USERACTION` token.
    pub needs_user_action: bool,
    /// The matching template (`/wallets/{}`), or `None` for an endpoint outside the table.
    pub template: Option<&'static str>,
}

/// Looks a request up: `path` may carry a query string, which is ignored.
pub fn lookup(method: Method, path: &str) -> EndpointInfo {
    let path = strip_query(path);
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // The most specific template wins: `/wallets/signatures` (if listed) before `/wallets/{}`.
    let best = ENDPOINTS
        .iter()
        .filter(|(m, _, _)| *m == method)
        .filter_map(|(_, template, ua)| {
            let literal = template_matches(template, &segments)?;
            Some((literal, *template, *ua))
        })
        .max_by_key(|(literal, _, _)| *literal);
    match best {
        Some((_, template, ua)) => EndpointInfo {
            needs_user_action: ua,
            template: Some(template),
        },
        None => EndpointInfo {
            needs_user_action: method != Method::Get,
            template: None,
        },
    }
}

/// Whether a request needs a user action (see [`lookup`]).
pub fn needs_user_action(method: Method, path: &str) -> bool {
    lookup(method, path).needs_user_action
}

/// Returns the number of literal segments matched, or `None` when the template does not match.
fn template_matches(template: &str, segments: &[&str]) -> Option<usize> {
    let parts: Vec<&str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut literal = 0;
    for (t, s) in parts.iter().zip(segments) {
        if *t == "{}" {
            if s.is_empty() {
                return None;
            }
        } else if t == s {
            literal += 1;
        } else {
            return None;
        }
    }
    Some(literal)
}

/// The path without its query string: what `userActionHttpPath` carries.
pub fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// Characters `encodeURIComponent` leaves alone: the official SDKs build paths with it.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes one path segment (an id that may hold `/`, `?`, spaces or non-ASCII), as
/// `encodeURIComponent` does: `wa-a/b c?d#é` becomes `wa-a%2Fb%20c%3Fd%23%C3%A9`.
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, COMPONENT).to_string()
}

/// Checks that a path is one the client can send *exactly as written*: the path part is what
/// the user action signs, what the server looks up, and what the URL parser sends, and the three
/// must be the same bytes. So the path:
///
/// - starts with `/` and holds no fragment (`#`);
/// - holds only characters a URL path carries unchanged: letters, digits, `-._~`, the
///   sub-delimiters `!$&'()*+,;=`, `:`, `@`, `/`, and `%` followed by two hex digits (anything
///   else — spaces, controls, non-ASCII, `"<>\^`{|}` — the parser would re-encode, and `\` it
///   would even turn into `/`);
/// - has no dot segment (`.`, `..`, or their encodings `%2e`, `.%2E`…), which the parser would
///   resolve away, so that `/wallets/../auth/…` cannot be signed as one path and sent as another.
///
/// The query (after `?`) is not signed, but is held to the same characters.
pub fn validate_path(path: &str) -> Result<(), ProtocolError> {
    let bad = |reason: &str| ProtocolError::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(bad(
            "must start with `/` (give the path only, not the base URL)",
        ));
    }
    if path.contains('#') {
        return Err(bad(
            "`#` must be percent-encoded (%23); encode ids with encode_segment",
        ));
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' => {
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(bad(
                        "`%` must start a percent-encoding (%XX); encode a literal % as %25",
                    ));
                }
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' | b':' | b'@' | b'/' | b'?' => {}
            b'\\' => {
                return Err(bad(
                    "`\\` would be sent as `/`; percent-encode it (%5C) with encode_segment",
                ))
            }
            _ => return Err(bad(
                "spaces, control, non-ASCII and the characters \"<>^`{|} must be percent-encoded \
                     (encode ids with encode_segment)",
            )),
        }
    }
    let is_dot = |segment: &str| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    };
    if strip_query(path).split('/').any(is_dot) {
        return Err(bad(
            "`.` and `..` segments (or %2e forms) would be resolved away by the URL parser, so the \
             path sent would differ from the path signed; give the resolved path",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exempt_and_signed_endpoints() {
        assert!(!needs_user_action(Method::Post, "/auth/action/init"));
        assert!(!needs_user_action(Method::Put, "/auth/logout"));
        assert!(!needs_user_action(
            Method::Post,
            "/networks/EthereumSepolia/call-function"
        ));
        assert!(needs_user_action(Method::Post, "/wallets"));
        assert!(needs_user_action(Method::Delete, "/webhooks/wh-1"));
        assert!(needs_user_action(Method::Put, "/wallets/wa-a%2Fb/tags"));
        assert!(!needs_user_action(Method::Get, "/wallets?limit=2"));
        // Outside the table: GET is free, anything else is signed.
        assert_eq!(lookup(Method::Post, "/brand-new/endpoint").template, None);
        assert!(needs_user_action(Method::Post, "/brand-new/endpoint"));
        assert!(!needs_user_action(Method::Get, "/brand-new/endpoint"));
        assert!(needs_user_action(Method::Patch, "/wallets/wa-1"));
    }

    #[test]
    fn query_is_stripped_and_segments_encoded() {
        assert_eq!(
            strip_query("/wallets?limit=2&paginationToken=a%20b"),
            "/wallets"
        );
        assert_eq!(strip_query("/wallets"), "/wallets");
        assert_eq!(encode_segment("wa-a/b c?d#é"), "wa-a%2Fb%20c%3Fd%23%C3%A9");
        assert_eq!(encode_segment("wa-1_x.y~(z)*'!"), "wa-1_x.y~(z)*'!");
        assert!(validate_path("/wallets/wa-1").is_ok());
        assert!(validate_path("wallets").is_err());
        assert!(validate_path("/wallets/a b").is_err());
        assert!(validate_path("/wallets/é").is_err());
        assert!(validate_path("/wallets#x").is_err());
    }

    #[test]
    fn paths_that_the_url_parser_would_rewrite_are_refused() {
        for bad in [
            "/wallets/../auth/credentials",
            "/wallets/%2e%2e/auth/credentials",
            "/wallets/.%2E/x",
            "/wallets/%2E/x",
            "/wallets/./x",
            "/wallets/..",
            "/wallets\\..\\auth",
            "/wallets\\x",
            "/wallets/a\"b",
            "/wallets/a<b>",
            "/wallets/a`b",
            "/wallets/{id}",
            "/wallets/a|b",
            "/wallets/a^b",
            "/wallets/50%",
            "/wallets/%zz",
            "/wallets?q=a b",
        ] {
            assert!(validate_path(bad).is_err(), "{bad} must be refused");
        }
        for good in [
            "/wallets/wa-1",
            "/wallets/wa-a%2Fb/tags",
            "/wallets/..a/x",
            "/wallets/a..b",
            "/wallets/%2e%2ex",
            "/wallets/wa-1_x.y~(z)*'!$&+,;=:@",
            "/wallets?limit=2&paginationToken=a%20b",
        ] {
            assert!(validate_path(good).is_ok(), "{good} must be accepted");
        }
    }

    /// The property the rule exists for: whatever passes is sent with exactly the path signed.
    /// Every one- and two-character segment over printable ASCII (and the dot encodings) is
    /// tried against the URL parser the client sends with.
    #[test]
    fn every_accepted_path_is_sent_as_signed() {
        let mut alphabet: Vec<String> = (0x20u8..0x7f).map(|b| (b as char).to_string()).collect();
        alphabet.extend(["%2e", "%2E", "%2F", "%5C", "%"].map(str::to_owned));
        let base = url::Url::parse("https://api.dfns.io").unwrap();
        let mut accepted = 0;
        for a in &alphabet {
            for b in alphabet.iter().chain(std::iter::once(&String::new())) {
                let path = format!("/wallets/{a}{b}/tags");
                if validate_path(&path).is_err() {
                    continue;
                }
                accepted += 1;
                let sent = base.join(&path).unwrap();
                assert_eq!(
                    sent.path(),
                    strip_query(&path),
                    "{path:?} would be rewritten"
                );
            }
        }
        assert!(
            accepted > 5000,
            "the rule accepts the ordinary characters ({accepted})"
        );
    }

    #[test]
    fn most_specific_template_wins() {
        let info = lookup(Method::Get, "/auth/credentials");
        assert_eq!(info.template, Some("/auth/credentials"));
        let info = lookup(Method::Post, "/auth/credentials/code/verify");
        assert_eq!(info.template, Some("/auth/credentials/code/verify"));
        assert!(!info.needs_user_action);
    }
}

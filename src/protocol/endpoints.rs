//! Which requests need a user action, and how request paths are written.
//!
//! The rule (docs/protocol.md §3): no `GET` needs one; every `POST`, `PUT`, `PATCH` and `DELETE`
//! does, except about thirty auth, login, registration, quote and proxy endpoints. Known endpoints
//! are looked up in a table of all 273 endpoints the official SDKs know; an endpoint missing from
//! the table follows the rule, erring on the side of signing (a needless user action costs a round
//! trip; a missing one costs a 403).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

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
///
/// The most specific template wins (the one with the most literal segments: a listed
/// `/wallets/signatures` before `/wallets/{}`). No allocation: the table is indexed once, on
/// first use, by method, number of segments and first segment.
pub fn lookup(method: Method, path: &str) -> EndpointInfo {
    match INDEX.find(method, path) {
        Some(entry) => EndpointInfo {
            needs_user_action: entry.needs_user_action,
            template: Some(entry.template),
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

/// Most segments a template may have (the longest has 7; the index refuses to build with one
/// over this bound, so a table that outgrows it fails every test at once). A path with more
/// cannot match any template; the bound lets a lookup split the path into an array on the stack.
const MAX_SEGMENTS: usize = 12;

/// The endpoint table, compiled once: every lookup used to split all 273 templates again (a
/// Vec per template per call: a sixth of the client's instructions per signed call).
static INDEX: LazyLock<Index> = LazyLock::new(|| Index::new(ENDPOINTS));

/// One template, split: the segments after the leading `/`, `None` for `{}`.
struct Entry {
    parts: Vec<Option<&'static str>>,
    template: &'static str,
    needs_user_action: bool,
}

impl Entry {
    fn matches(&self, segments: &[&str]) -> bool {
        self.parts
            .iter()
            .zip(segments)
            .all(|(part, segment)| match part {
                Some(literal) => literal == segment,
                None => !segment.is_empty(),
            })
    }
}

/// The templates of one method and one number of segments.
#[derive(Default)]
struct Shape {
    /// By first literal segment (sorted, for a binary search): the templates that may match a
    /// path starting with it — those starting with that literal and those starting with `{}` —
    /// most specific first.
    by_first: Vec<(&'static str, Vec<usize>)>,
    /// The templates starting with `{}`, most specific first: the candidates for a first segment
    /// no template spells out.
    any_first: Vec<usize>,
}

/// [`ENDPOINTS`] indexed by method (`shapes[method]`) and number of segments after the leading
/// `/` (`shapes[method][n]`).
struct Index {
    entries: Vec<Entry>,
    shapes: [Vec<Shape>; 5],
}

fn method_index(method: Method) -> usize {
    match method {
        Method::Get => 0,
        Method::Post => 1,
        Method::Put => 2,
        Method::Patch => 3,
        Method::Delete => 4,
    }
}

impl Index {
    fn new(table: &'static [(Method, &'static str, bool)]) -> Self {
        let entries: Vec<Entry> = table
            .iter()
            .map(|&(_, template, needs_user_action)| {
                let rest = template
                    .strip_prefix('/')
                    .expect("endpoint templates start with `/`");
                let parts: Vec<_> = rest.split('/').map(|p| (p != "{}").then_some(p)).collect();
                assert!(
                    parts.len() <= MAX_SEGMENTS,
                    "{template}: raise MAX_SEGMENTS"
                );
                Entry {
                    parts,
                    template,
                    needs_user_action,
                }
            })
            .collect();
        let literals = |e: &Entry| e.parts.iter().filter(|p| p.is_some()).count();
        let mut shapes: [Vec<Shape>; 5] = Default::default();
        for (i, (method, _, _)) in table.iter().enumerate() {
            let by_len = &mut shapes[method_index(*method)];
            let n = entries[i].parts.len();
            if by_len.len() <= n {
                by_len.resize_with(n + 1, Shape::default);
            }
            let shape = &mut by_len[n];
            match entries[i].parts[0] {
                Some(first) => match shape.by_first.iter_mut().find(|(f, _)| *f == first) {
                    Some((_, list)) => list.push(i),
                    None => shape.by_first.push((first, vec![i])),
                },
                None => shape.any_first.push(i),
            }
        }
        // Most literal segments first; between equals, the later row (the rule of the linear
        // scan this replaces, which kept the last of the best).
        let order = |a: &usize, b: &usize| {
            literals(&entries[*b])
                .cmp(&literals(&entries[*a]))
                .then(b.cmp(a))
        };
        for shape in shapes.iter_mut().flatten() {
            shape.by_first.sort_by_key(|(first, _)| *first);
            for (_, list) in &mut shape.by_first {
                list.extend_from_slice(&shape.any_first);
                list.sort_by(order);
            }
            shape.any_first.sort_by(order);
        }
        Index { entries, shapes }
    }

    fn find(&self, method: Method, path: &str) -> Option<&Entry> {
        // Every template starts with `/`; trailing slashes do not count.
        let rest = strip_query(path).trim_end_matches('/').strip_prefix('/')?;
        let mut segments = [""; MAX_SEGMENTS];
        let mut n = 0;
        for segment in rest.split('/') {
            *segments.get_mut(n)? = segment;
            n += 1;
        }
        let shape = self.shapes[method_index(method)].get(n)?;
        let candidates = match shape
            .by_first
            .binary_search_by(|(first, _)| (*first).cmp(segments[0]))
        {
            Ok(at) => &shape.by_first[at].1,
            Err(_) => &shape.any_first,
        };
        candidates
            .iter()
            .map(|&i| &self.entries[i])
            .find(|entry| entry.matches(&segments[..n]))
    }
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
    if strip_query(path).split('/').any(is_dot_segment) {
        return Err(bad(
            "`.` and `..` segments (or %2e forms) would be resolved away by the URL parser, so the \
             path sent would differ from the path signed; give the resolved path",
        ));
    }
    Ok(())
}

/// Whether a segment is `.` or `..` once `%2e`/`%2E` are decoded: one or two dots, each
/// written `.`, `%2e` or `%2E`. (Read in place: this runs on every request.)
fn is_dot_segment(segment: &str) -> bool {
    let one_dot = |s: &str| -> Option<usize> {
        if s.starts_with('.') {
            Some(1)
        } else if s.len() >= 3 && s.as_bytes()[..3].eq_ignore_ascii_case(b"%2e") {
            Some(3)
        } else {
            None
        }
    };
    let Some(first) = one_dot(segment) else {
        return false;
    };
    let rest = &segment[first..];
    rest.is_empty() || one_dot(rest) == Some(rest.len())
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

    /// The dot-segment check reads in place what decoding `%2e`/`%2E` and comparing used to
    /// (two strings per segment per request): the same answer on every string of up to four
    /// pieces from the pieces that matter.
    #[test]
    fn dot_segments_are_found_without_decoding() {
        let decoded_is_dot = |segment: &str| {
            let decoded = segment.replace("%2e", ".").replace("%2E", ".");
            decoded == "." || decoded == ".."
        };
        let pieces = [
            "", ".", "%2e", "%2E", "%2", "%", "e", "E", "2", "a", "%25", "é",
        ];
        let mut dots = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let segment = format!("{a}{b}{c}{d}");
                        assert_eq!(
                            is_dot_segment(&segment),
                            decoded_is_dot(&segment),
                            "{segment:?}"
                        );
                        dots += usize::from(decoded_is_dot(&segment));
                    }
                }
            }
        }
        assert!(dots > 100, "{dots}");
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

    /// The linear scan the index replaced, kept as the reference: every template split again,
    /// the most literal segments winning, the last of equals kept.
    fn reference_lookup(method: Method, path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = strip_query(path).trim_end_matches('/').split('/').collect();
        ENDPOINTS
            .iter()
            .filter(|(m, _, _)| *m == method)
            .filter_map(|(_, template, _)| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (t, s) in parts.iter().zip(&segments) {
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
                Some((literal, *template))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, template)| template)
    }

    /// The index gives the reference's answer on every path built from the table's own
    /// words: each template with its `{}` filled by ids, and with each segment in turn replaced
    /// by every literal that other templates of its length have there (which builds the ties,
    /// e.g. `/wallets/bulk-create/assets` for `/wallets/bulk-create/{}` and `/wallets/{}/assets`),
    /// cut short, made longer, with empty segments, trailing slashes and queries, under every
    /// method.
    #[test]
    fn the_index_answers_as_the_linear_scan() {
        let split = |t: &'static str| t.split('/').collect::<Vec<_>>();
        let mut at: std::collections::BTreeMap<(usize, usize), Vec<&str>> = Default::default();
        for (_, template, _) in ENDPOINTS {
            let parts = split(template);
            for (i, part) in parts.iter().enumerate() {
                at.entry((parts.len(), i)).or_default().push(part);
            }
        }
        let ids = ["wa-1", "x%2Fy", ""];
        let mut paths = vec![
            String::new(),
            "/".into(),
            "//".into(),
            "wallets".into(),
            "x/wallets".into(),
        ];
        for (_, template, _) in ENDPOINTS {
            let parts = split(template);
            for id in ids {
                paths.push(template.replace("{}", id));
            }
            for i in 1..parts.len() {
                for word in at[&(parts.len(), i)].iter().chain(&ids) {
                    let mut p = parts.clone();
                    p[i] = word;
                    paths.push(p.join("/").replace("{}", "id-1"));
                }
                paths.push(parts[..i].join("/").replace("{}", "id-1"));
            }
            let filled = template.replace("{}", "id-1");
            paths.push(format!("{filled}/extra"));
            paths.push(format!("{filled}/"));
            paths.push(format!("{filled}//"));
            paths.push(format!("{filled}?limit=1&a=/b"));
            paths.push(format!("/{filled}"));
        }
        paths.sort_unstable();
        paths.dedup();
        let mut matched = 0;
        for path in &paths {
            for method in [
                Method::Get,
                Method::Post,
                Method::Put,
                Method::Patch,
                Method::Delete,
            ] {
                let expected = reference_lookup(method, path);
                let info = lookup(method, path);
                assert_eq!(info.template, expected, "{method} {path:?}");
                let ua = ENDPOINTS
                    .iter()
                    .find(|(m, t, _)| *m == method && Some(*t) == expected)
                    .map_or(method != Method::Get, |(_, _, ua)| *ua);
                assert_eq!(info.needs_user_action, ua, "{method} {path:?}");
                matched += usize::from(expected.is_some());
            }
        }
        assert!(
            paths.len() > 8_000 && matched > 5_000,
            "{} paths, {matched} matches",
            paths.len()
        );
        // The ties the order settles, as the scan settled them: the later row.
        assert_eq!(
            lookup(Method::Get, "/wallets/bulk-create/assets").template,
            Some("/wallets/{}/assets")
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

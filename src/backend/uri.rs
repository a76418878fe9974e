//! Key URIs: one string names one key, whatever holds it.
//!
//! - `file:/path/to/key.pem` — a software key (PKCS#8, SEC1 or PKCS#1 PEM);
//! - `pkcs11:token=custody;object=dfns-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN`
//!   — an RFC 7512 PKCS#11 URI: path attributes separated by `;`, query attributes by `&`, values
//!   percent-decoded;
//! - `piv:slot=9a?serial=12345678&pin-source=prompt` — a YubiKey PIV slot, same syntax.
//!
//! This module only splits and decodes; each backend checks the attributes it understands.
//! A PIN is never accepted inside a URI (`pin-value` is refused): URIs end up in configs, shell
//! history and logs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::BackendError;

/// A parsed key URI.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyUri {
    /// A PEM file holding a software key.
    File {
        /// The file's path.
        path: PathBuf,
    },
    /// A key on a PKCS#11 token.
    Pkcs11(UriAttributes),
    /// A key in a PIV slot (YubiKey).
    Piv(UriAttributes),
}

/// The attributes of a `pkcs11:` or `piv:` URI, percent-decoded, in the order given.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UriAttributes {
    raw: String,
    path: Vec<(String, String)>,
    query: Vec<(String, String)>,
    /// The exact bytes of `id` (binary in RFC 7512, so it may not be UTF-8).
    id_bytes: Option<Vec<u8>>,
}

impl UriAttributes {
    /// A path attribute (`token`, `object`, `id`, `slot`…).
    pub fn path_attr(&self, name: &str) -> Option<&str> {
        self.path
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The exact bytes of the `id` path attribute (an RFC 7512 id is binary: `id=%b0%30`).
    pub fn id_bytes(&self) -> Option<&[u8]> {
        self.id_bytes.as_deref()
    }

    /// A query attribute (`module-path`, `pin-source`, `serial`…).
    pub fn query_attr(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The URI as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Fails when an attribute outside `path_names` / `query_names` is present, so that a typo
    /// (`objct=`) is an error rather than a silently ignored filter.
    pub fn expect_only(
        &self,
        path_names: &[&str],
        query_names: &[&str],
    ) -> Result<(), BackendError> {
        for (k, _) in &self.path {
            if !path_names.contains(&k.as_str()) {
                return Err(self.invalid(format!(
                    "unknown attribute `{k}` (expected one of: {})",
                    path_names.join(", ")
                )));
            }
        }
        for (k, _) in &self.query {
            if !query_names.contains(&k.as_str()) {
                return Err(self.invalid(format!(
                    "unknown query attribute `{k}` (expected one of: {})",
                    query_names.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// An [`BackendError::InvalidUri`] for this URI.
    pub fn invalid(&self, reason: impl Into<String>) -> BackendError {
        BackendError::InvalidUri {
            uri: self.raw.clone(),
            // Reasons quote values, and a value can carry a PIN (`pool-size=5;pin=1234`: `;`
            // does not split query attributes): redact them like the URI.
            reason: redact_pins(&reason.into()),
        }
    }

    fn parse(raw: &str, body: &str) -> Result<Self, BackendError> {
        let invalid = |reason: String| BackendError::InvalidUri {
            uri: redact_pins(raw),
            reason,
        };
        let (path_part, query_part) = match body.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (body, None),
        };
        let split = |part: &str, sep: char| -> Result<Vec<(String, String)>, BackendError> {
            let mut out: Vec<(String, String)> = Vec::new();
            for item in part.split(sep).filter(|s| !s.is_empty()) {
                let (k, v) = item
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("`{item}` is not of the form name=value")))?;
                let bytes: Vec<u8> = percent_encoding::percent_decode_str(v).collect();
                // Only `id` is binary; every other value is text.
                let v = match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) if k == "id" => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    Err(_) => {
                        return Err(invalid(format!("value of `{k}` is not UTF-8 once decoded")))
                    }
                };
                if k == "pin-value" || k == "pin" {
                    return Err(invalid(
                        "a PIN inside a URI would end up in logs and shell history; use \
                         pin-source=env:NAME, pin-source=file:PATH or pin-source=prompt"
                            .to_owned(),
                    ));
                }
                if out.iter().any(|(seen, _)| seen == k) {
                    return Err(invalid(format!("attribute `{k}` appears twice")));
                }
                out.push((k.to_owned(), v));
            }
            Ok(out)
        };
        let id_bytes = path_part
            .split(';')
            .find_map(|kv| kv.strip_prefix("id="))
            .map(|v| percent_encoding::percent_decode_str(v).collect());
        Ok(UriAttributes {
            // Kept redacted: it ends up in errors and descriptions.
            raw: redact_pins(raw),
            id_bytes,
            path: split(path_part, ';')?,
            query: match query_part {
                Some(q) => split(q, '&')?,
                None => Vec::new(),
            },
        })
    }
}

/// Hides what may be a PIN before a URI is kept or quoted: the value of any `pin-value=` or
/// `pin=`, and a `pin-source=` that is not a source (`pin-source=123456`: the PIN itself, by
/// mistake).
fn redact_pins(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = ["pin-value=", "pin-source=", "pin="]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| (i, k.len())))
        .min()
    {
        let (start, key_len) = at;
        let (before, after) = rest.split_at(start + key_len);
        out.push_str(before);
        let end = after.find([';', '&', '?']).unwrap_or(after.len());
        let value = &after[..end];
        let is_source =
            value == "prompt" || value.starts_with("env:") || value.starts_with("file:");
        if before.ends_with("pin-source=") && is_source {
            out.push_str(value);
        } else {
            out.push_str("[REDACTED]");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for UriAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl KeyUri {
    /// Parses a key URI.
    pub fn parse(s: &str) -> Result<Self, BackendError> {
        let invalid = |reason: &str| BackendError::InvalidUri {
            uri: redact_pins(s),
            reason: reason.to_owned(),
        };
        let (scheme, body) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected `file:PATH`, `pkcs11:…` or `piv:slot=…`"))?;
        match scheme {
            "file" => {
                // Accept both `file:/abs/path` and `file:///abs/path`.
                let path = body.strip_prefix("//").unwrap_or(body);
                if path.is_empty() {
                    return Err(invalid("the file path is empty"));
                }
                // `file:` takes no attributes: `?pin=…` would become part of the path, and the
                // path is quoted when the file cannot be read.
                if ["pin=", "pin-value=", "pin-source="]
                    .iter()
                    .any(|k| path.contains(k))
                {
                    return Err(invalid(
                        "a `file:` key takes no PIN (a PIN inside a URI would end up in logs and \
                         shell history); encrypted key files are not supported",
                    ));
                }
                Ok(KeyUri::File {
                    path: PathBuf::from(path),
                })
            }
            "pkcs11" => Ok(KeyUri::Pkcs11(UriAttributes::parse(s, body)?)),
            "piv" => Ok(KeyUri::Piv(UriAttributes::parse(s, body)?)),
            _ => Err(invalid(
                "unknown scheme; expected `file:`, `pkcs11:` or `piv:`",
            )),
        }
    }

    /// The URI's scheme (`file`, `pkcs11`, `piv`).
    pub fn scheme(&self) -> &'static str {
        match self {
            KeyUri::File { .. } => "file",
            KeyUri::Pkcs11(_) => "pkcs11",
            KeyUri::Piv(_) => "piv",
        }
    }
}

impl FromStr for KeyUri {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyUri::parse(s)
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `parse` drops a leading `//` (`file:///a` is `/a`): keep one that is the path's.
            KeyUri::File { path } if path.to_string_lossy().starts_with("//") => {
                write!(f, "file://{}", path.display())
            }
            KeyUri::File { path } => write!(f, "file:{}", path.display()),
            KeyUri::Pkcs11(a) | KeyUri::Piv(a) => f.write_str(&a.raw),
        }
    }
}

impl fmt::Debug for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyUri({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs11_uri_splits_and_decodes() {
        let uri = KeyUri::parse(
            "pkcs11:token=my%20token;object=dfns-1;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:HSM_PIN",
        )
        .unwrap();
        let KeyUri::Pkcs11(a) = &uri else {
            panic!("not pkcs11: {uri:?}")
        };
        assert_eq!(a.path_attr("token"), Some("my token"));
        assert_eq!(a.path_attr("object"), Some("dfns-1"));
        assert_eq!(a.path_attr("id"), Some("\u{1}\u{2}"));
        assert_eq!(a.id_bytes(), Some(&[1u8, 2][..]));
        let binary = KeyUri::parse("pkcs11:token=t;id=%b0%30%ff").unwrap();
        let KeyUri::Pkcs11(b) = &binary else {
            unreachable!()
        };
        assert_eq!(b.id_bytes(), Some(&[0xb0u8, 0x30, 0xff][..]));
        assert!(
            KeyUri::parse("pkcs11:token=%ff").is_err(),
            "only ids are binary"
        );
        assert_eq!(
            a.query_attr("module-path"),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(a.query_attr("pin-source"), Some("env:HSM_PIN"));
        assert!(a
            .expect_only(&["token", "object", "id"], &["module-path", "pin-source"])
            .is_ok());
        let err = a
            .expect_only(&["token"], &["module-path", "pin-source"])
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown attribute `object`"),
            "{err}"
        );
    }

    #[test]
    fn pin_value_is_refused_and_not_echoed_as_a_value() {
        let err = KeyUri::parse("pkcs11:token=t?pin-value=123456&module-path=/m.so").unwrap_err();
        assert!(err.to_string().contains("pin-source=env:NAME"), "{err}");
        assert!(!err.to_string().contains("123456"), "{err}");
        assert!(
            err.to_string()
                .contains("pin-value=[REDACTED]&module-path=/m.so"),
            "{err}"
        );
        for uri in [
            "pkcs11:token=t;object=k?pin=246813&module-path=/m.so",
            "piv:slot=9a?pin=246813",
            "pkcs11:token=t;pin=246813;object=k",
        ] {
            let err = KeyUri::parse(uri).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("246813"), "{text}");
            assert!(text.contains("pin=[REDACTED]"), "{text}");
        }
        let err = KeyUri::parse("file:/k.pem?pin=246813").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("246813") && text.contains("takes no PIN"),
            "{text}"
        );
        let err = KeyUri::parse("piv:slot=9a;pin-value=1234").unwrap_err();
        assert!(matches!(err, BackendError::InvalidUri { .. }));

        // A PIN given as the source by mistake is kept out of the URI's text and its errors.
        let KeyUri::Pkcs11(a) = KeyUri::parse("pkcs11:token=t;object=k?pin-source=246813").unwrap()
        else {
            unreachable!()
        };
        assert_eq!(a.as_str(), "pkcs11:token=t;object=k?pin-source=[REDACTED]");
        assert!(!format!("{a:?} {}", a.invalid("x")).contains("246813"));
        let KeyUri::Piv(a) = KeyUri::parse("piv:slot=9a?pin-source=env:PIV_PIN&serial=1").unwrap()
        else {
            unreachable!()
        };
        assert_eq!(a.as_str(), "piv:slot=9a?pin-source=env:PIV_PIN&serial=1");
    }

    #[test]
    fn file_uris_and_bad_schemes() {
        assert_eq!(
            KeyUri::parse("file:///tmp/k.pem").unwrap(),
            KeyUri::File {
                path: "/tmp/k.pem".into()
            }
        );
        assert_eq!(
            KeyUri::parse("file:k.pem").unwrap(),
            KeyUri::File {
                path: "k.pem".into()
            }
        );
        assert!(KeyUri::parse("file:").is_err());
        assert!(KeyUri::parse("/tmp/k.pem").is_err());
        assert!(KeyUri::parse("http:x").is_err());
        assert!(KeyUri::parse("piv:slot=9a;slot=9c").is_err());
        assert!(KeyUri::parse("piv:slot").is_err());
        assert_eq!(
            KeyUri::parse("piv:slot=9a?serial=5").unwrap().to_string(),
            "piv:slot=9a?serial=5"
        );
    }
}

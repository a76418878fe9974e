//! The user-action challenge and its answer, as they travel on the wire.
//!
//! `POST /auth/action/init` returns a [`UserActionChallenge`]; the credential signs
//! [`client_data`] built from it; the answer is a [`FirstFactor`] sent to `POST /auth/action`,
//! which returns the single-use token for `X-DFNS-USERACTION`. Login (`/auth/login/init`) uses the
//! same challenge shape. Field order in every serialized struct is the order the official
//! TypeScript SDK emits.

use serde::{Deserialize, Serialize};

use super::encoding::b64url;
use super::endpoints::Method;
use crate::error::ProtocolError;

/// Body of `POST /auth/action/init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActionInit {
    /// The request body exactly as it will be sent (`""` for none).
    pub user_action_payload: String,
    /// The request's method.
    pub user_action_http_method: String,
    /// The request's path as sent, percent-encoded, without query and base-URL prefix.
    pub user_action_http_path: String,
    /// Always `Api`.
    pub user_action_server_kind: String,
}

impl UserActionInit {
    /// Builds the init body for a request.
    pub fn new(method: Method, path: &str, payload: &str) -> Self {
        UserActionInit {
            user_action_payload: payload.to_owned(),
            user_action_http_method: method.as_str().to_owned(),
            user_action_http_path: super::endpoints::strip_query(path).to_owned(),
            user_action_server_kind: "Api".to_owned(),
        }
    }
}

/// The JSON of a [`UserActionInit`], from borrowed fields: what the struct serializes as (its
/// `Serialize` is this), and what the client sends without copying the payload into the struct.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitJson<'a> {
    user_action_payload: &'a str,
    user_action_http_method: &'a str,
    user_action_http_path: &'a str,
    user_action_server_kind: &'a str,
}

impl Serialize for UserActionInit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        InitJson {
            user_action_payload: &self.user_action_payload,
            user_action_http_method: &self.user_action_http_method,
            user_action_http_path: &self.user_action_http_path,
            user_action_server_kind: &self.user_action_server_kind,
        }
        .serialize(serializer)
    }
}

/// The `/auth/action/init` body for a request: the JSON of `UserActionInit::new(method, path,
/// payload)`, written straight from the borrowed payload.
#[cfg(feature = "client")]
pub(crate) fn init_body(
    method: Method,
    path: &str,
    payload: &str,
) -> Result<String, ProtocolError> {
    let path = super::endpoints::strip_query(path);
    let mut out = String::with_capacity(128 + payload.len() * 5 / 4 + path.len());
    out.push_str(r#"{"userActionPayload":"#);
    push_json_string(&mut out, payload);
    out.push_str(r#","userActionHttpMethod":""#);
    out.push_str(method.as_str());
    out.push_str(r#"","userActionHttpPath":"#);
    push_json_string(&mut out, path);
    out.push_str(r#","userActionServerKind":"Api"}"#);
    Ok(out)
}

/// Appends `value` as a JSON string, escaped as serde_json and `JSON.stringify` escape it: `"`
/// and `\`, the control characters (`\b \f \n \r \t`, the others `\u00xx`), nothing else.
/// The client's bodies are written with it rather than through serde, which escapes byte by
/// byte the base64 strings that have nothing to escape: 298k instructions per signed call
/// instead of 309k (`benches/callgrind.sh`). Tests hold the bytes equal to the structs' serde
/// JSON.
#[cfg(feature = "client")]
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    // One pass without an early exit (a vector loop); most strings here need no escape.
    let plain = value.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.push_str(value);
    } else {
        let mut from = 0;
        for (i, b) in value.bytes().enumerate() {
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            out.push_str(&value[from..i]);
            if escaped.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            } else {
                out.push_str(escaped);
            }
            from = i + 1;
        }
        out.push_str(&value[from..]);
    }
    out.push('"');
}

/// The challenge returned by `/auth/action/init` (and `/auth/login/init`). Unknown fields are
/// ignored; only `challenge` and `challengeIdentifier` are required.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserActionChallenge {
    /// The opaque base64url challenge to put in `clientData`.
    pub challenge: String,
    /// The identifier to send back with the answer.
    pub challenge_identifier: String,
    /// The credentials allowed to answer.
    #[serde(default)]
    pub allow_credentials: AllowCredentials,
    /// Credential kinds the server accepts, as given.
    #[serde(default)]
    pub supported_credential_kinds: Vec<serde_json::Value>,
    /// `required`, `preferred`…, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_verification: Option<String>,
}

/// [`UserActionChallenge`] as [`UserActionChallenge::from_json_for_signing`] reads it: the same
/// fields and rules, but `supportedCredentialKinds` as a list of anything, not kept.
#[cfg(feature = "client")]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeToSign {
    challenge: String,
    challenge_identifier: String,
    #[serde(default)]
    allow_credentials: AllowCredentials,
    // A `Vec` of a zero-sized type: no heap allocation, however long the list.
    #[serde(default, rename = "supportedCredentialKinds")]
    _supported_credential_kinds: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    user_verification: Option<String>,
}

#[cfg(feature = "client")]
impl From<ChallengeToSign> for UserActionChallenge {
    fn from(lean: ChallengeToSign) -> Self {
        UserActionChallenge {
            challenge: lean.challenge,
            challenge_identifier: lean.challenge_identifier,
            allow_credentials: lean.allow_credentials,
            supported_credential_kinds: Vec::new(),
            user_verification: lean.user_verification,
        }
    }
}

/// `allowCredentials` of a challenge.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllowCredentials {
    /// Key credentials (the kind this crate signs with).
    #[serde(default)]
    pub key: Vec<AllowedCredential>,
    /// WebAuthn credentials, as given.
    #[serde(default)]
    pub webauthn: Vec<serde_json::Value>,
    /// Password-protected Key credentials (a Key credential whose private key Dfns keeps
    /// encrypted under the user's password).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub password_protected_key: Vec<AllowedCredential>,
}

impl AllowCredentials {
    /// Every credential id any list names (Key, password-protected Key, WebAuthn).
    pub fn all_ids(&self) -> impl Iterator<Item = &str> {
        self.key
            .iter()
            .chain(&self.password_protected_key)
            .map(|c| c.id.as_str())
            .chain(
                self.webauthn
                    .iter()
                    .filter_map(|w| w.get("id").and_then(serde_json::Value::as_str)),
            )
    }

    /// Whether no list names any credential (some login flows): any credential may answer.
    pub fn is_empty(&self) -> bool {
        self.key.is_empty() && self.password_protected_key.is_empty() && self.webauthn.is_empty()
    }
}

/// One allowed credential.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct AllowedCredential {
    /// `public-key`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The credential id.
    pub id: String,
}

impl UserActionChallenge {
    /// Parses an init response and checks the challenge is well formed.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        Self::decode::<Self>(bytes)
    }

    /// Like [`from_json`](Self::from_json), for the client's own init → sign → complete flow,
    /// which reads the challenge, its identifier and the allowed credentials only:
    /// `supportedCredentialKinds` is checked to be a list, as `from_json` checks it, but its
    /// entries are skipped and the field is left empty. Each entry would be an
    /// insertion-ordered map with its keys and values on the heap: 22 of the 49 heap
    /// allocations of a signed call, and ~3% of its CPU.
    #[cfg(feature = "client")]
    pub(crate) fn from_json_for_signing(bytes: &[u8]) -> Result<Self, ProtocolError> {
        Self::decode::<ChallengeToSign>(bytes)
    }

    /// The one way both parses go: `bytes` decoded as `T` (the challenge or its lean form), a
    /// decode failure named as a malformed challenge, then [`validate`](Self::validate).
    fn decode<T: serde::de::DeserializeOwned + Into<Self>>(
        bytes: &[u8],
    ) -> Result<Self, ProtocolError> {
        let challenge: Self = serde_json::from_slice::<T>(bytes)
            .map_err(|e| ProtocolError::Malformed {
                what: "user action challenge",
                reason: crate::error::json_error_summary(&e),
            })?
            .into();
        challenge.validate()?;
        Ok(challenge)
    }

    /// Checks the fields the signer relies on: a non-empty base64url challenge (it is embedded
    /// in signed JSON, so anything else is refused rather than signed) and an identifier.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let malformed = |reason: &str| ProtocolError::Malformed {
            what: "user action challenge",
            reason: reason.to_owned(),
        };
        if self.challenge.is_empty() {
            return Err(malformed("`challenge` is empty"));
        }
        if !self
            .challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(malformed("`challenge` is not base64url"));
        }
        if self.challenge_identifier.is_empty() {
            return Err(malformed("`challengeIdentifier` is empty"));
        }
        Ok(())
    }

    /// The Key credential ids allowed to answer.
    pub fn allowed_key_ids(&self) -> impl Iterator<Item = &str> {
        self.allow_credentials.key.iter().map(|c| c.id.as_str())
    }

    /// Checks that the challenge is well formed and that credential `cred_id` may answer it:
    /// [`ProtocolError::CredentialNotAllowed`] when the challenge lists allowed credentials and
    /// none of its lists (Key, password-protected Key, WebAuthn) names it, as the official
    /// TypeScript signer refuses. A challenge that lists no credential at all (some login
    /// flows) may be answered by any.
    pub fn check_allows(&self, cred_id: &str) -> Result<(), ProtocolError> {
        self.validate()?;
        let lists = &self.allow_credentials;
        if !lists.is_empty() && !lists.all_ids().any(|id| id == cred_id) {
            return Err(ProtocolError::CredentialNotAllowed {
                cred_id: cred_id.to_owned(),
                allowed: lists.all_ids().map(str::to_owned).collect(),
            });
        }
        Ok(())
    }
}

/// What a `clientData` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientDataType {
    /// Answering a challenge (`key.get`).
    Get,
    /// Registering a new credential (`key.create`).
    Create,
}

#[derive(Serialize)]
struct ClientDataJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    challenge: &'a str,
}

/// The exact `clientData` bytes the official TypeScript signer emits:
/// `{"type":"key.get","challenge":"<challenge>"}` (compact, this order).
pub fn client_data(kind: ClientDataType, challenge: &str) -> Vec<u8> {
    let kind = match kind {
        ClientDataType::Get => "key.get",
        ClientDataType::Create => "key.create",
    };
    // Serializing a struct of two strings cannot fail.
    serde_json::to_vec(&ClientDataJson { kind, challenge }).expect("two strings serialize")
}

/// The `credentialAssertion` of a Key first factor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialAssertion {
    /// The credential id.
    pub cred_id: String,
    /// base64url of the `clientData` bytes.
    pub client_data: String,
    /// base64url of the signature.
    pub signature: String,
}

/// A `firstFactor` (or `secondFactor`) answer: `{"kind":"Key","credentialAssertion":{…}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FirstFactor {
    /// Always `Key` for this crate.
    pub kind: String,
    /// The signed assertion.
    pub credential_assertion: CredentialAssertion,
}

impl FirstFactor {
    /// The Key answer of credential `cred_id`: `client_data` (from [`client_data`] with
    /// [`ClientDataType::Get`]) and the key's signature over it, both base64url-encoded.
    pub fn key(cred_id: &str, client_data: &[u8], signature: &[u8]) -> Self {
        FirstFactor {
            kind: "Key".to_owned(),
            credential_assertion: CredentialAssertion {
                cred_id: cred_id.to_owned(),
                client_data: b64url(client_data),
                signature: b64url(signature),
            },
        }
    }

    /// The compact JSON, byte-identical to the official SDK's.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings serialize")
    }
}

/// Body of `POST /auth/action` (and, without `secondFactor`, of `POST /auth/login`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActionComplete {
    /// From the challenge.
    pub challenge_identifier: String,
    /// The answer.
    pub first_factor: FirstFactor,
    /// An optional second factor (not written when absent).
    pub second_factor: Option<FirstFactor>,
}

/// The JSON of a [`UserActionComplete`], from borrowed fields (its `Serialize` is this).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompleteJson<'a> {
    challenge_identifier: &'a str,
    first_factor: &'a FirstFactor,
    #[serde(skip_serializing_if = "Option::is_none")]
    second_factor: Option<&'a FirstFactor>,
}

impl Serialize for UserActionComplete {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CompleteJson {
            challenge_identifier: &self.challenge_identifier,
            first_factor: &self.first_factor,
            second_factor: self.second_factor.as_ref(),
        }
        .serialize(serializer)
    }
}

/// The `/auth/action` body answering challenge `challenge_identifier` with `first_factor`: the
/// JSON of a [`UserActionComplete`] without a second factor, written from borrowed fields.
#[cfg(feature = "client")]
pub(crate) fn complete_body(
    challenge_identifier: &str,
    first_factor: &FirstFactor,
) -> Result<String, ProtocolError> {
    let FirstFactor {
        kind,
        credential_assertion: assertion,
    } = first_factor;
    let mut out = String::with_capacity(
        128 + challenge_identifier.len()
            + assertion.cred_id.len()
            + assertion.client_data.len()
            + assertion.signature.len(),
    );
    out.push_str(r#"{"challengeIdentifier":"#);
    push_json_string(&mut out, challenge_identifier);
    out.push_str(r#","firstFactor":{"kind":"#);
    push_json_string(&mut out, kind);
    out.push_str(r#","credentialAssertion":{"credId":"#);
    push_json_string(&mut out, &assertion.cred_id);
    out.push_str(r#","clientData":"#);
    push_json_string(&mut out, &assertion.client_data);
    out.push_str(r#","signature":"#);
    push_json_string(&mut out, &assertion.signature);
    out.push_str("}}}");
    Ok(out)
}

/// Response of `POST /auth/action`, decoded straight into a secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserActionToken {
    /// The single-use token for `X-DFNS-USERACTION`.
    pub user_action: secrecy::SecretString,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_data_is_the_ts_form() {
        assert_eq!(
            client_data(ClientDataType::Get, "abc-_1"),
            br#"{"type":"key.get","challenge":"abc-_1"}"#.to_vec()
        );
        assert_eq!(
            client_data(ClientDataType::Create, "Zz"),
            br#"{"type":"key.create","challenge":"Zz"}"#.to_vec()
        );
    }

    #[test]
    fn malformed_challenges_are_refused() {
        for body in [
            &br#"{"challengeIdentifier":"x"}"#[..],
            br#"{"challenge":"","challengeIdentifier":"x"}"#,
            br#"{"challenge":"a\"b","challengeIdentifier":"x"}"#,
            br#"{"challenge":"ab==","challengeIdentifier":"x"}"#,
            br#"{"challenge":"ab","challengeIdentifier":""}"#,
            br#"not json"#,
            br#"{"challenge":12,"challengeIdentifier":"x"}"#,
        ] {
            let err = UserActionChallenge::from_json(body).unwrap_err();
            assert!(matches!(err, ProtocolError::Malformed { .. }), "{err}");
        }
        let ok = UserActionChallenge::from_json(
            br#"{"challenge":"YWJj","challengeIdentifier":"id","allowCredentials":{"key":[{"type":"public-key","id":"c1"}],"webauthn":[]},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(ok.allowed_key_ids().collect::<Vec<_>>(), vec!["c1"]);
    }

    /// The signing flow's lean parse reads what `from_json` reads, except the kinds it skips,
    /// and refuses what `from_json` refuses (a `supportedCredentialKinds` that is not a list
    /// included).
    #[cfg(feature = "client")]
    #[test]
    fn the_lean_parse_agrees_with_from_json() {
        let kinds = r#"[{"kind":"Key","factor":"first","requiresSecondFactor":false},{"kind":"Fido2","factor":"first","requiresSecondFactor":false}]"#;
        let accepted = [
            format!(
                r#"{{"challenge":"YWJj","challengeIdentifier":"id","supportedCredentialKinds":{kinds},"userVerification":"required","attestation":"direct","allowCredentials":{{"key":[{{"type":"public-key","id":"c1"}}],"passwordProtectedKey":[{{"type":"public-key","id":"p1"}}],"webauthn":[{{"type":"public-key","id":"w1"}}]}},"externalAuthenticationUrl":""}}"#
            ),
            r#"{"challenge":"YWJj","challengeIdentifier":"id"}"#.to_owned(),
            r#"{"challenge":"YWJj","challengeIdentifier":"id","supportedCredentialKinds":[1,"x",null,[]]}"#.to_owned(),
        ];
        for body in &accepted {
            let full = UserActionChallenge::from_json(body.as_bytes()).unwrap();
            let lean = UserActionChallenge::from_json_for_signing(body.as_bytes()).unwrap();
            assert!(lean.supported_credential_kinds.is_empty());
            let expected = UserActionChallenge {
                supported_credential_kinds: Vec::new(),
                ..full
            };
            assert_eq!(lean, expected, "{body}");
        }
        let full = UserActionChallenge::from_json(accepted[0].as_bytes()).unwrap();
        assert_eq!(full.supported_credential_kinds.len(), 2);
        assert_eq!(full.user_verification.as_deref(), Some("required"));
        assert_eq!(
            full.allow_credentials.all_ids().collect::<Vec<_>>(),
            vec!["c1", "p1", "w1"]
        );

        for body in [
            &br#"{"challenge":"YWJj","challengeIdentifier":"id","supportedCredentialKinds":{}}"#[..],
            br#"{"challenge":"YWJj","challengeIdentifier":"id","supportedCredentialKinds":"Key"}"#,
            br#"{"challenge":"YWJj","challengeIdentifier":"id","supportedCredentialKinds":[}"#,
            br#"{"challenge":"YWJj","challengeIdentifier":"id","challenge":"YWJj"}"#,
            br#"{"challengeIdentifier":"x"}"#,
            br#"{"challenge":"ab==","challengeIdentifier":"x"}"#,
            br#"{"challenge":"ab","challengeIdentifier":""}"#,
            br#"{"challenge":"YWJj","challengeIdentifier":"id","allowCredentials":{"key":[{"id":5}]}}"#,
        ] {
            let full = UserActionChallenge::from_json(body).unwrap_err();
            let lean = UserActionChallenge::from_json_for_signing(body).unwrap_err();
            assert!(matches!(lean, ProtocolError::Malformed { .. }), "{lean}");
            assert_eq!(lean.to_string(), full.to_string());
        }
    }

    #[test]
    fn every_credential_list_is_read() {
        let c = UserActionChallenge::from_json(
            br#"{"challenge":"YWJj","challengeIdentifier":"id","allowCredentials":{"key":[],"webauthn":[{"type":"public-key","id":"wa-1"}],"passwordProtectedKey":[{"type":"public-key","id":"ppk-1"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            c.allow_credentials.all_ids().collect::<Vec<_>>(),
            vec!["ppk-1", "wa-1"]
        );
        assert!(!c.allow_credentials.is_empty());
        let none =
            UserActionChallenge::from_json(br#"{"challenge":"YWJj","challengeIdentifier":"id"}"#)
                .unwrap();
        assert!(none.allow_credentials.is_empty());
    }

    #[test]
    fn init_body_field_order_and_query_stripping() {
        let init = UserActionInit::new(Method::Delete, "/webhooks/wh-1?x=1", "{}");
        let expected = r#"{"userActionPayload":"{}","userActionHttpMethod":"DELETE","userActionHttpPath":"/webhooks/wh-1","userActionServerKind":"Api"}"#;
        assert_eq!(serde_json::to_string(&init).unwrap(), expected);
        #[cfg(feature = "client")]
        assert_eq!(
            init_body(Method::Delete, "/webhooks/wh-1?x=1", "{}").unwrap(),
            expected
        );
    }

    /// What the client sends, written from borrowed fields, is what the public structs
    /// serialize as, byte for byte — payloads that need escaping included.
    #[cfg(feature = "client")]
    #[test]
    fn bodies_written_from_borrowed_fields_are_the_structs_json() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        for payload in [
            "",
            r#"{"network":"EthereumSepolia","name":"Trésorerie ✓ \"q\" / <tag> & \u2028"}"#,
            "{\"a\":\"\u{7f}\t\"}",
            &every_ascii,
            "\\\"\u{0}\u{1f}é𝄞\u{2029}\"\\",
        ] {
            for method in [Method::Post, Method::Put, Method::Delete] {
                let init = UserActionInit::new(method, "/wallets/wa-1/tags?x=%2F", payload);
                assert_eq!(
                    init_body(method, "/wallets/wa-1/tags?x=%2F", payload).unwrap(),
                    serde_json::to_string(&init).unwrap()
                );
            }
        }
        let ff = FirstFactor::key(
            "cred-1",
            br#"{"type":"key.get","challenge":"YWJj"}"#,
            b"sig",
        );
        let complete = UserActionComplete {
            challenge_identifier: "ci.\"x\"".into(),
            first_factor: ff.clone(),
            second_factor: None,
        };
        let json = complete_body("ci.\"x\"", &ff).unwrap();
        assert_eq!(json, serde_json::to_string(&complete).unwrap());
        // Every field escaped as serde escapes it.
        let odd = FirstFactor {
            kind: every_ascii.clone(),
            credential_assertion: CredentialAssertion {
                cred_id: "c\u{8}\u{c}é".into(),
                client_data: every_ascii.clone(),
                signature: "\\".into(),
            },
        };
        let odd_complete = UserActionComplete {
            challenge_identifier: every_ascii.clone(),
            first_factor: odd.clone(),
            second_factor: None,
        };
        assert_eq!(
            complete_body(&every_ascii, &odd).unwrap(),
            serde_json::to_string(&odd_complete).unwrap()
        );
        assert_eq!(
            json,
            format!(
                r#"{{"challengeIdentifier":"ci.\"x\"","firstFactor":{}}}"#,
                ff.to_json()
            )
        );
        // With a second factor, the struct writes it after the first.
        let both = UserActionComplete {
            second_factor: Some(ff.clone()),
            ..complete
        };
        assert_eq!(
            serde_json::to_string(&both).unwrap(),
            format!(
                "{},\"secondFactor\":{}}}",
                &json[..json.len() - 1],
                ff.to_json()
            )
        );
    }
}

//! JWT-shaped strings: auth tokens, challenge identifiers and user-action tokens.
//!
//! They look like Dfns' (header `{"alg":"EdDSA","typ":"JWT"}`, the claim
//! `https://custom/app_metadata` that SDKs read) so clients that peek into them work, but the
//! "signature" is random bytes: the simulator never trusts what a token says, it looks the
//! whole string up in its own tables. A token from another simulator instance is unknown here.

use serde_json::{json, Value};

use super::util::{b64url, random_bytes, unix_now};

/// What a token is for; goes into the claims so a human reading one can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A bearer token (service account, PAT, login).
    Auth,
    /// `challengeIdentifier` of a user-action challenge.
    ActionChallenge,
    /// `challengeIdentifier` of a login challenge.
    LoginChallenge,
    /// `challengeIdentifier` of a credential-registration challenge.
    CredentialChallenge,
    /// The `X-DFNS-USERACTION` token.
    UserAction,
}

/// Who a token speaks for.
pub(crate) struct Subject<'a> {
    pub(crate) org_id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) token_id: &'a str,
    /// `Service`, `Pat`, `Temp`, … (the claim SDKs read).
    pub(crate) token_kind: &'a str,
    pub(crate) lifetime_secs: u64,
}

/// Mints a JWT-shaped token for `subject` and `purpose`.
pub(crate) fn mint(subject: &Subject<'_>, purpose: Purpose) -> String {
    let iat = unix_now();
    let mut claims = json!({
        "iss": "auth.dfns.io",
        "aud": "dfns:auth:user",
        "sub": subject.org_id,
        "jti": subject.token_id,
        "https://custom/username": "",
        "https://custom/app_metadata": {
            "userId": subject.user_id,
            "orgId": subject.org_id,
            "tokenKind": subject.token_kind,
        },
        "iat": iat,
        "exp": iat + subject.lifetime_secs,
    });
    let extra: Option<(&str, &str)> = match purpose {
        Purpose::Auth => None,
        Purpose::ActionChallenge => Some(("purpose", "action")),
        Purpose::LoginChallenge => Some(("purpose", "login")),
        Purpose::CredentialChallenge => Some(("purpose", "credential")),
        Purpose::UserAction => Some(("kind", "UserAction")),
    };
    if let Some((key, value)) = extra {
        claims[key] = Value::from(value);
        claims["nonce"] = Value::from(b64url(&random_bytes(8)));
    }
    let header = b64url(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let payload = b64url(claims.to_string().as_bytes());
    format!("{header}.{payload}.{}", b64url(&random_bytes(64)))
}

/// A fresh challenge: base64url of 64 random hex characters, like Dfns' challenges.
pub(crate) fn challenge() -> String {
    b64url(hex::encode(random_bytes(32)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::util::b64url_decode;

    #[test]
    fn tokens_carry_the_claim_sdks_read_and_differ_each_time() {
        let subject = Subject {
            org_id: "or-1",
            user_id: "us-1",
            token_id: "to-1",
            token_kind: "Service",
            lifetime_secs: 60,
        };
        let a = mint(&subject, Purpose::Auth);
        let b = mint(&subject, Purpose::Auth);
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value = serde_json::from_slice(&b64url_decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["https://custom/app_metadata"]["orgId"], "or-1");
        assert_eq!(claims["https://custom/app_metadata"]["userId"], "us-1");
        assert_eq!(
            claims["https://custom/app_metadata"]["tokenKind"],
            "Service"
        );
        let c = challenge();
        assert_eq!(b64url_decode(&c).unwrap().len(), 64);
    }
}

//! The user-action flow: `POST /auth/action/init` issues a challenge bound to one request,
//! `POST /auth/action` checks the signed assertion and issues a single-use token, and
//! [`consume`] checks that token on the real request (same method, raw path, byte-identical
//! body).

use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::errors::{ApiError, USER_ACTION_USED};
use super::request::{nonempty_field, ok, opt_str_field, str_field, Reply, Req};
use super::state::{ChallengeKind, Inner, UserAction};
use super::tokens::Purpose;
use super::util::b64url_decode;

/// `POST /auth/action/init`.
pub(crate) fn init(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    let body = req.json()?;
    let payload = str_field(&body, "userActionPayload")?.to_owned();
    let method = nonempty_field(&body, "userActionHttpMethod")?.to_owned();
    let path = nonempty_field(&body, "userActionHttpPath")?.to_owned();
    if !matches!(method.as_str(), "POST" | "PUT" | "DELETE" | "PATCH") {
        return Err(ApiError::bad_request(
            "`userActionHttpMethod` must be POST, PUT, DELETE or PATCH",
        ));
    }
    if !path.starts_with('/') || path.contains('?') {
        return Err(ApiError::bad_request(
            "`userActionHttpPath` must be the request path: starting with `/`, without query string",
        ));
    }
    match opt_str_field(&body, "userActionServerKind")? {
        None | Some("Api") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`userActionServerKind` {other:?} is not served by the simulator (only \"Api\")"
            )))
        }
    }
    let (challenge, identifier) = inner.issue_challenge(
        &user_id,
        ChallengeKind::Action {
            method,
            path,
            payload,
        },
    )?;
    ok(challenge_body(
        inner,
        &user_id,
        &challenge,
        &identifier,
        true,
    ))
}

/// User-action tokens remembered before spent and expired ones are forgotten.
const MAX_KEPT_USER_ACTIONS: usize = 10_000;

/// The body of a user-action or login challenge, with the fields the transcripts show.
pub(crate) fn challenge_body(
    inner: &Inner,
    user_id: &str,
    challenge: &str,
    identifier: &str,
    all_kinds: bool,
) -> Value {
    let keys: Vec<Value> = inner
        .active_credentials(user_id)
        .iter()
        .map(|c| json!({ "type": "public-key", "id": c.cred_id }))
        .collect();
    let kind = |k: &str| json!({ "kind": k, "factor": "first", "requiresSecondFactor": false });
    let kinds = if all_kinds {
        vec![kind("Key"), kind("Fido2"), kind("PasswordProtectedKey")]
    } else {
        vec![kind("Key")]
    };
    json!({
        "challenge": challenge,
        "challengeIdentifier": identifier,
        "supportedCredentialKinds": kinds,
        "userVerification": "required",
        "attestation": "direct",
        "allowCredentials": { "key": keys, "passwordProtectedKey": [], "webauthn": [] },
        "externalAuthenticationUrl": "",
    })
}

/// `POST /auth/action`.
pub(crate) fn complete(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    let body = req.json()?;
    let identifier = nonempty_field(&body, "challengeIdentifier")?;
    let challenge = inner.take_challenge(identifier)?;
    if challenge.user_id != user_id {
        return Err(ApiError::challenge_invalid(
            "the challenge was issued to another user",
        ));
    }
    let ChallengeKind::Action {
        method,
        path,
        payload,
    } = challenge.kind
    else {
        return Err(ApiError::challenge_invalid("not a user-action challenge"));
    };
    let first_factor = body
        .get("firstFactor")
        .ok_or_else(|| ApiError::bad_request("`firstFactor` is required"))?;
    verify_assertion(inner, &user_id, &challenge.challenge, first_factor)?;
    let token = inner.mint_for(&user_id, Purpose::UserAction);
    let expires = Instant::now() + inner.challenge_ttl;
    if inner.user_actions.len() >= MAX_KEPT_USER_ACTIONS {
        // Spent and expired tokens need not be remembered: a replay of one is refused either
        // way (unknown token), only with a vaguer message.
        let now = Instant::now();
        inner.user_actions.retain(|_, a| !a.used && a.expires > now);
    }
    inner.user_actions.insert(
        token.clone(),
        UserAction {
            user_id,
            method,
            path,
            payload,
            expires,
            used: false,
        },
    );
    inner.stats.user_actions_issued += 1;
    ok(json!({ "userAction": token }))
}

/// The refusal of a user action or login signed by a deactivated credential (401, as for an
/// assertion that does not verify; the simulator's wording: Dfns' is not documented).
pub(crate) const CREDENTIAL_DEACTIVATED: &str = "credential is deactivated";

/// Checks a `{"kind":"Key","credentialAssertion":{credId, clientData, signature}}` factor
/// against `challenge` and the user's credentials (only an active one passes); returns the
/// credential id used.
///
/// A deactivated credential of the user is refused with [`CREDENTIAL_DEACTIVATED`] only once
/// its signature verifies: whoever does not hold its key (`/auth/login` needs no auth token)
/// learns nothing about it beyond the usual 401.
pub(crate) fn verify_assertion(
    inner: &Inner,
    user_id: &str,
    challenge: &str,
    factor: &Value,
) -> Result<String, ApiError> {
    let kind = str_field(factor, "kind")?;
    if kind != "Key" {
        return Err(ApiError::bad_request(format!(
            "credential kind {kind:?} is not supported by the simulator (only \"Key\")"
        )));
    }
    let assertion = factor
        .get("credentialAssertion")
        .ok_or_else(|| ApiError::bad_request("`firstFactor.credentialAssertion` is required"))?;
    let cred_id = nonempty_field(assertion, "credId")?;
    let client_data_b64 = nonempty_field(assertion, "clientData")?;
    let signature_b64 = nonempty_field(assertion, "signature")?;

    let credential = inner
        .credentials
        .get(cred_id)
        .filter(|c| c.user_id == user_id)
        .ok_or_else(|| ApiError::assertion_invalid("credId is not a credential of the caller"))?;
    let client_data = b64url_decode(client_data_b64)
        .ok_or_else(|| ApiError::bad_request("`clientData` is not base64url without padding"))?;
    let signature = b64url_decode(signature_b64)
        .ok_or_else(|| ApiError::bad_request("`signature` is not base64url without padding"))?;
    check_client_data(&client_data, "key.get", challenge).map_err(ApiError::assertion_invalid)?;
    credential
        .key
        .verify(&client_data, &signature)
        .map_err(ApiError::assertion_invalid)?;
    if !credential.active {
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, CREDENTIAL_DEACTIVATED).because(format!(
                "credential {cred_id} was deactivated (PUT /auth/credentials/deactivate): sign \
                 with another credential, or activate it again (PUT /auth/credentials/activate)"
            )),
        );
    }
    Ok(cred_id.to_owned())
}

/// Parses `clientData` (it must be a JSON object) and checks `type` and `challenge`. Other
/// members (`origin`, `crossOrigin` from other SDKs) are allowed and ignored. The error says
/// what is wrong; callers choose the status.
pub(crate) fn check_client_data(
    client_data: &[u8],
    expected_type: &str,
    challenge: &str,
) -> Result<(), String> {
    let parsed: Value =
        serde_json::from_slice(client_data).map_err(|e| format!("clientData is not JSON: {e}"))?;
    let found_type = parsed.get("type").and_then(Value::as_str);
    if found_type != Some(expected_type) {
        return Err(format!(
            "clientData.type is {found_type:?}, expected {expected_type:?}"
        ));
    }
    if parsed.get("challenge").and_then(Value::as_str) != Some(challenge) {
        return Err("clientData.challenge is not the challenge that was issued".to_owned());
    }
    Ok(())
}

/// Checks and spends the `X-DFNS-USERACTION` token of a request that needs one.
pub(crate) fn consume(
    inner: &mut Inner,
    req: &Req<'_>,
    header: Option<&str>,
) -> Result<(), ApiError> {
    let user_id = &req.caller()?.user_id;
    let token = header
        .ok_or_else(|| ApiError::user_action_invalid("X-DFNS-USERACTION header is missing"))?;
    let action = inner
        .user_actions
        .get_mut(token)
        .ok_or_else(|| ApiError::user_action_invalid("unknown user action token"))?;
    if action.user_id != *user_id {
        return Err(ApiError::user_action_invalid(
            "the user action belongs to another user",
        ));
    }
    if action.used {
        return Err(ApiError::bad_request(USER_ACTION_USED));
    }
    // Presented once, spent: a mismatching request cannot be corrected and sent again.
    action.used = true;
    if action.expires < Instant::now() {
        return Err(ApiError::user_action_invalid("the user action has expired"));
    }
    if action.method != req.method {
        return Err(ApiError::user_action_invalid(format!(
            "signed for method {}, request is {}",
            action.method, req.method
        )));
    }
    if action.path != req.path {
        return Err(ApiError::user_action_invalid(format!(
            "signed for path {}, request path is {}",
            action.path, req.path
        )));
    }
    if action.payload.as_bytes() != req.body {
        return Err(ApiError::user_action_invalid(
            "request body is not byte-identical to the signed userActionPayload",
        ));
    }
    inner.stats.user_actions_used += 1;
    Ok(())
}

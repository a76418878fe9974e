//! Key credential registration (docs/protocol.md §6): the challenge, the attestation check, the
//! list, the code variant for a user who has no credential at hand, and activation and
//! deactivation of a caller's credentials.
//!
//! The attestation is checked by rebuilding the fingerprint from what was received
//! (`{"clientDataHash":"<hex sha256(clientData)>","publicKey":"<PEM>"}`) and verifying the new
//! key's signature over it: a client that signs anything else is refused.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;

use super::errors::ApiError;
use super::request::{nonempty_field, ok, opt_str_field, str_field, Reply, Req};
use super::state::{ChallengeKind, CredentialCode, Inner};
use super::user_action::check_client_data;
use super::util::{b64url_decode, iso_from_unix, random_bytes, unix_now};
use super::verify::CredentialKey;

/// `POST /auth/credentials/init` `{"kind":"Key"}`.
pub(crate) fn init(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    let body = req.json()?;
    let kind = nonempty_field(&body, "kind")?;
    registration_challenge(inner, &user_id, kind, ChallengeKind::Credential)
}

/// A registration challenge of `purpose`: a plain one (needs a user action to complete) or one
/// born of a code (completes without one). Keeping them apart stops a bare auth token from
/// registering a credential through the code route without any code.
fn registration_challenge(
    inner: &mut Inner,
    user_id: &str,
    kind: &str,
    purpose: ChallengeKind,
) -> Reply {
    if kind != "Key" {
        return Err(ApiError::bad_request(format!(
            "credential kind {kind:?} is not supported by the simulator (only \"Key\")"
        )));
    }
    let username = inner
        .users
        .get(user_id)
        .map(|u| u.username.clone())
        .unwrap_or_default();
    let (challenge, identifier) = inner.issue_challenge(user_id, purpose)?;
    ok(json!({
        "kind": "Key",
        "user": { "id": user_id, "displayName": username, "name": username },
        "challengeIdentifier": identifier,
        "challenge": challenge,
        "rp": { "id": "dfns.io", "name": "Dfns" },
        "attestation": "direct",
        "pubKeyCredParams": [
            { "type": "public-key", "alg": -7 },
            { "type": "public-key", "alg": -8 },
            { "type": "public-key", "alg": -257 }
        ],
        "temporaryAuthenticationToken": identifier,
    }))
}

/// `POST /auth/credentials` (user action required, checked before this runs).
pub(crate) fn create(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    register(inner, &user_id, req, ChallengeKind::Credential)
}

/// `POST /auth/credentials/code/verify`: like `create`, authorised by a code-born challenge.
pub(crate) fn create_with_code(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let identifier = nonempty_field(&body, "challengeIdentifier")?;
    let user_id = inner
        .challenges
        .get(identifier)
        .map(|c| c.user_id.clone())
        .ok_or_else(|| ApiError::challenge_invalid("unknown challengeIdentifier"))?;
    register(inner, &user_id, req, ChallengeKind::CodeCredential)
}

fn register(inner: &mut Inner, user_id: &str, req: &Req<'_>, expected: ChallengeKind) -> Reply {
    let body = req.json()?;
    let kind = nonempty_field(&body, "credentialKind")?;
    if kind != "Key" {
        return Err(ApiError::bad_request(format!(
            "credential kind {kind:?} is not supported by the simulator (only \"Key\")"
        )));
    }
    let identifier = nonempty_field(&body, "challengeIdentifier")?;
    let name = opt_str_field(&body, "credentialName")?
        .unwrap_or("")
        .to_owned();
    let info = body
        .get("credentialInfo")
        .ok_or_else(|| ApiError::bad_request("`credentialInfo` is required"))?;
    let cred_id = nonempty_field(info, "credId")?.to_owned();
    let client_data_b64 = nonempty_field(info, "clientData")?;
    let attestation_b64 = nonempty_field(info, "attestationData")?;

    let challenge = inner.take_challenge(identifier)?;
    if challenge.user_id != user_id || challenge.kind != expected {
        return Err(ApiError::challenge_invalid(
            "not a credential challenge of this user for this route",
        ));
    }
    if !super::util::is_b64url(&cred_id) {
        return Err(ApiError::bad_request("`credId` must be a base64url string"));
    }
    if inner.credentials.contains_key(&cred_id) {
        return Err(ApiError::conflict(
            "a credential with this credId already exists",
        ));
    }

    let client_data = b64url_decode(client_data_b64)
        .ok_or_else(|| ApiError::bad_request("`clientData` is not base64url without padding"))?;
    check_client_data(&client_data, "key.create", &challenge.challenge)
        .map_err(|e| ApiError::bad_request("invalid clientData").because(e))?;
    let attestation_bytes = b64url_decode(attestation_b64).ok_or_else(|| {
        ApiError::bad_request("`attestationData` is not base64url without padding")
    })?;
    let attestation: Value = serde_json::from_slice(&attestation_bytes).map_err(|e| {
        ApiError::bad_request("`attestationData` is not JSON").because(e.to_string())
    })?;
    let pem = str_field(&attestation, "publicKey")?;
    let signature_hex = str_field(&attestation, "signature")?;
    let key = CredentialKey::from_pem(pem).map_err(|e| {
        ApiError::bad_request("attestationData.publicKey is not a usable public key").because(e)
    })?;
    if signature_hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request(
            "attestationData.signature must be lowercase hex",
        ));
    }
    let signature = hex::decode(signature_hex)
        .map_err(|_| ApiError::bad_request("attestationData.signature is not hex"))?;
    let fingerprint = json!({
        "clientDataHash": hex::encode(sha2::Sha256::digest(&client_data)),
        "publicKey": pem,
    })
    .to_string();
    key.verify(fingerprint.as_bytes(), &signature)
        .map_err(|e| {
            ApiError::bad_request("attestation signature is invalid")
                .because(format!("{e}; signed text must be {fingerprint}"))
        })?;

    let credential = inner.add_credential(user_id, &cred_id, &name, pem, key);
    ok(credential_entity(credential))
}

fn credential_entity(c: &super::state::Credential) -> Value {
    json!({
        "kind": "Key",
        "credentialId": c.cred_id,
        "credentialUuid": c.uuid,
        "dateCreated": c.date_created,
        "isActive": c.active,
        "name": c.name,
        "publicKey": c.public_key_pem,
        "relyingPartyId": "dfns.io",
        "origin": "",
    })
}

/// `GET /auth/credentials`: the caller's credentials.
pub(crate) fn list(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = &req.caller()?.user_id;
    let items: Vec<Value> = inner
        .credentials
        .values()
        .filter(|c| &c.user_id == user_id)
        .map(credential_entity)
        .collect();
    ok(json!({ "items": items }))
}

/// `PUT /auth/credentials/activate` and `/deactivate` `{"credentialUuid"}` (user action,
/// checked before this runs), answered `{"message":"success"}` as Dfns answers. As Dfns
/// documents, a credential already in the state asked for is left as it is (still 200).
///
/// A deactivated credential signs no user action and no login (`user_action.rs`) until it is
/// activated again; `GET /auth/credentials` shows it with `isActive: false`. Only the caller's
/// own credentials can be changed: another user's, like an unknown uuid, is a 404, so the
/// answer does not reveal that it exists. The simulator's own rule (Dfns documents none): the
/// last active credential of a user cannot be deactivated (400), since the user could then
/// sign nothing more, not even the activation. Any other, including the one that signed this
/// very request, can.
pub(crate) fn set_active(inner: &mut Inner, req: &Req<'_>, active: bool) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    let body = req.json()?;
    let uuid = nonempty_field(&body, "credentialUuid")?;
    let (cred_id, was_active) = inner
        .credentials
        .values()
        .find(|c| c.uuid == uuid && c.user_id == user_id)
        .map(|c| (c.cred_id.clone(), c.active))
        .ok_or_else(|| {
            ApiError::not_found("credential not found").because(
                "`credentialUuid` is not a credential of the caller (GET /auth/credentials lists \
                 them; it is the `credentialUuid`, `cr-…`, not the `credentialId`)",
            )
        })?;
    if !active && was_active && inner.active_credentials(&user_id).len() == 1 {
        return Err(ApiError::bad_request(LAST_ACTIVE_CREDENTIAL).because(
            "the user would be left without a credential to sign with, even to activate one \
             again: register another credential first (POST /auth/credentials)",
        ));
    }
    if let Some(credential) = inner.credentials.get_mut(&cred_id) {
        credential.active = active;
    }
    ok(json!({ "message": "success" }))
}

/// The refusal to deactivate a user's last active credential (400, the simulator's wording).
pub(crate) const LAST_ACTIVE_CREDENTIAL: &str =
    "cannot deactivate the last active credential of a user";

/// `POST /auth/credentials/code` (user action): a one-minute code for the caller.
pub(crate) fn create_code(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    // Dfns' schema requires it: an ISO-8601 string or a unix timestamp.
    match req.json()?.get("expiration") {
        Some(Value::String(_) | Value::Number(_)) => {}
        _ => {
            return Err(ApiError::bad_request(
                "`expiration` is required (an ISO-8601 datetime string or a unix timestamp)",
            ))
        }
    }
    let alphabet = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let code: String = random_bytes(9)
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let c = alphabet[usize::from(*b) % alphabet.len()] as char;
            if i == 2 || i == 5 {
                format!("{c}-")
            } else {
                c.to_string()
            }
        })
        .collect();
    let lifetime = Duration::from_secs(60);
    inner.credential_codes.insert(
        code.clone(),
        CredentialCode {
            user_id,
            expires: Instant::now() + lifetime,
        },
    );
    ok(json!({ "code": code, "expiration": iso_from_unix(unix_now() + lifetime.as_secs(), 0) }))
}

/// `POST /auth/credentials/code/init` `{"credentialKind":"Key","code"}` (no auth token).
pub(crate) fn code_init(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let code = nonempty_field(&body, "code")?;
    let kind = nonempty_field(&body, "credentialKind")?.to_owned();
    let entry = inner
        .credential_codes
        .remove(code)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid or expired code"))?;
    if entry.expires < Instant::now() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid or expired code",
        ));
    }
    registration_challenge(inner, &entry.user_id, &kind, ChallengeKind::CodeCredential)
}

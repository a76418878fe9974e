//! Service accounts and personal access tokens: a public key in, a long-lived bearer token and
//! a credential id to sign user actions with out (shapes from `create_service_account.json`
//! and `create_pat.json`).

use serde_json::{json, Value};

use super::errors::ApiError;
use super::permissions;
use super::request::{nonempty_field, ok, opt_str_field, Reply, Req};
use super::state::Inner;
use super::util::{b64url, percent_decode, random_bytes};
use super::verify::CredentialKey;

/// Dfns' limit on `daysValid`.
const MAX_DAYS_VALID: u64 = 730;

/// Reads and checks `publicKey`; returns the key and a fresh credential id.
fn new_credential(body: &Value) -> Result<(String, CredentialKey, String), ApiError> {
    let pem = nonempty_field(body, "publicKey")?;
    let key = CredentialKey::from_pem(pem).map_err(|e| {
        ApiError::bad_request("`publicKey` is not a usable SPKI PEM public key").because(e)
    })?;
    Ok((pem.to_owned(), key, b64url(&random_bytes(32))))
}

fn lifetime_secs(body: &Value, field: &str, unit: u64, max: u64) -> Result<u64, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(max * unit),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => Ok(n * unit),
            _ => Err(ApiError::bad_request(format!(
                "`{field}` must be an integer from 1 to {max}"
            ))),
        },
    }
}

/// `POST /auth/service-accounts` `{name, publicKey, permissionId?, externalId?, daysValid?}`.
pub(crate) fn create(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let name = nonempty_field(&body, "name")?.to_owned();
    let secs = lifetime_secs(&body, "daysValid", 86_400, MAX_DAYS_VALID)?;
    let permission_id = opt_str_field(&body, "permissionId")?.map(str::to_owned);
    let (pem, key, cred_id) = new_credential(&body)?;
    // Usernames are unique in an organisation (delegated login finds users by them).
    if inner.users.values().any(|u| u.username == name) {
        return Err(ApiError::conflict(
            "a user or service account with this name already exists; choose another name",
        ));
    }
    let creator = req.caller()?.clone();
    let user_id = inner.add_user(&name, "CustomerEmployee", true);
    inner.add_credential(&user_id, &cred_id, &name, &pem, key);
    let token = inner.issue_token(&user_id, "Service", &name, Some(&cred_id), secs);
    let token_id = inner.tokens[&token].token_id.clone();
    // With a permission, the service account's token holds exactly it; without, the
    // service account gets its creator's reach (permissions.rs).
    let identity = if permission_id.is_some() {
        &token_id
    } else {
        &user_id
    };
    if let Err(e) =
        permissions::grant_new_identity(inner, &creator, identity, permission_id.as_deref(), false)
    {
        inner.tokens.remove(&token);
        inner.users.remove(&user_id);
        inner.credentials.remove(&cred_id);
        return Err(e);
    }
    ok(service_account_entity(inner, &user_id, Some(&token)))
}

/// The service account as Dfns shows it; `token` is included only when just created.
fn service_account_entity(inner: &Inner, user_id: &str, token: Option<&str>) -> Value {
    let user = &inner.users[user_id];
    let mut tokens: Vec<(&String, &super::state::AuthToken)> = inner
        .tokens
        .iter()
        .filter(|(_, t)| t.user_id == user_id && t.kind == "Service")
        .collect();
    tokens.sort_by(|a, b| a.1.date_created.cmp(&b.1.date_created));
    let credential_uuid = tokens
        .first()
        .and_then(|(_, t)| t.cred_id.as_ref())
        .and_then(|id| inner.credentials.get(id))
        .map(|c| c.uuid.clone())
        .unwrap_or_default();
    let access_tokens: Vec<Value> = tokens
        .iter()
        .map(|(string, t)| {
            let credential = t.cred_id.as_ref().and_then(|id| inner.credentials.get(id));
            let mut entity = json!({
                "dateCreated": t.date_created,
                "credId": t.cred_id,
                "isActive": t.active && user.active,
                "kind": "ServiceAccount",
                "linkedUserId": user_id,
                "linkedAppId": format!("ap-{}", &t.token_id[3..]),
                "name": t.name,
                "orgId": inner.org_id,
                "permissionAssignments": permissions::assignments_of(inner, &t.token_id),
                "publicKey": credential.map(|c| c.public_key_pem.clone()),
                "tokenId": t.token_id,
            });
            if token == Some(string.as_str()) {
                entity["accessToken"] = Value::from(string.as_str());
            }
            entity
        })
        .collect();
    json!({
        "userInfo": {
            "username": user.username,
            "name": user.username,
            "userId": user.id,
            "kind": user.kind,
            "credentialUuid": credential_uuid,
            "orgId": inner.org_id,
            "isActive": user.active,
            "isServiceAccount": true,
            "isRegistered": true,
            "permissionAssignments": permissions::assignments_of(inner, user_id),
        },
        "accessTokens": access_tokens,
    })
}

/// `GET /auth/service-accounts`.
pub(crate) fn list(inner: &mut Inner, _req: &Req<'_>) -> Reply {
    let mut ids: Vec<(&String, &String)> = inner
        .users
        .values()
        .filter(|u| u.is_service_account)
        .map(|u| (&u.date_created, &u.id))
        .collect();
    ids.sort();
    let items: Vec<Value> = ids
        .iter()
        .map(|(_, id)| service_account_entity(inner, id, None))
        .collect();
    ok(json!({ "items": items }))
}

fn find_service_account(inner: &Inner, raw_id: &str) -> Result<String, ApiError> {
    let id = percent_decode(raw_id).unwrap_or_default();
    match inner.users.get(&id) {
        Some(user) if user.is_service_account => Ok(id),
        _ => Err(ApiError::not_found("service account not found")),
    }
}

/// `GET /auth/service-accounts/{id}`.
pub(crate) fn get(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = find_service_account(inner, raw_id)?;
    ok(service_account_entity(inner, &id, None))
}

/// `PUT /auth/service-accounts/{id}/activate` and `/deactivate`. A deactivated service
/// account's tokens are refused (401) until it is activated again.
pub(crate) fn set_active(inner: &mut Inner, req: &Req<'_>, raw_id: &str, active: bool) -> Reply {
    let id = find_service_account(inner, raw_id)?;
    if !active && id == inner.root_user_id && req.caller()?.user_id != id {
        return Err(ApiError::forbidden(
            "the root service account cannot be deactivated by another identity",
        ));
    }
    if let Some(user) = inner.users.get_mut(&id) {
        user.active = active;
    }
    ok(service_account_entity(inner, &id, None))
}

/// `POST /auth/pats` `{name, publicKey, secondsValid? | daysValid?, permissionId?, externalId?}`:
/// a token for the caller; `publicKey` is registered as a credential of the caller.
pub(crate) fn create_pat(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = req.caller()?.user_id.clone();
    let body = req.json()?;
    let name = nonempty_field(&body, "name")?.to_owned();
    // Dfns takes `secondsValid` or `daysValid` (not both); a PAT always carries a public key,
    // which becomes a credential of the caller (the official SDKs' types require `credId`).
    let secs = match (body.get("secondsValid"), body.get("daysValid")) {
        (Some(s), Some(d)) if !s.is_null() && !d.is_null() => {
            return Err(ApiError::bad_request(
                "give `secondsValid` or `daysValid`, not both",
            ))
        }
        (_, Some(d)) if !d.is_null() => lifetime_secs(&body, "daysValid", 86_400, MAX_DAYS_VALID)?,
        _ => lifetime_secs(&body, "secondsValid", 1, MAX_DAYS_VALID * 86_400)?,
    };
    if body.get("publicKey").is_none_or(Value::is_null) {
        return Err(ApiError::bad_request(
            "`publicKey` is required: the PEM public key whose credential signs for the token",
        ));
    }
    let permission_id = opt_str_field(&body, "permissionId")?.map(str::to_owned);
    let (pem, key, cred_id) = new_credential(&body)?;
    let creator = req.caller()?.clone();
    inner.add_credential(&user_id, &cred_id, &name, &pem, key);
    let token = inner.issue_token(&user_id, "Pat", &name, Some(&cred_id), secs);
    let token_id = inner.tokens[&token].token_id.clone();
    // A PAT with a permission may do exactly that; without, what its user may.
    if let Err(e) =
        permissions::grant_new_identity(inner, &creator, &token_id, permission_id.as_deref(), true)
    {
        inner.tokens.remove(&token);
        inner.credentials.remove(&cred_id);
        return Err(e);
    }
    let mut entity = pat_entity(inner, &token);
    entity["accessToken"] = Value::from(token);
    ok(entity)
}

fn pat_entity(inner: &Inner, token: &str) -> Value {
    let t = &inner.tokens[token];
    let credential = t.cred_id.as_ref().and_then(|id| inner.credentials.get(id));
    json!({
        "dateCreated": t.date_created,
        "credId": t.cred_id,
        "isActive": t.active,
        "kind": "Pat",
        "linkedUserId": t.user_id,
        "linkedAppId": format!("ap-{}", &t.token_id[3..]),
        "name": t.name,
        "orgId": inner.org_id,
        "publicKey": credential.map(|c| c.public_key_pem.clone()),
        "tokenId": t.token_id,
        "permissionAssignments": permissions::assignments_of(inner, &t.token_id),
    })
}

/// `GET /auth/pats`: the caller's personal access tokens (without the token strings).
pub(crate) fn list_pats(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let user_id = &req.caller()?.user_id;
    let mut items: Vec<Value> = inner
        .tokens
        .iter()
        .filter(|(_, t)| t.kind == "Pat" && &t.user_id == user_id)
        .map(|(s, _)| pat_entity(inner, s))
        .collect();
    items.sort_by(|a, b| a["dateCreated"].as_str().cmp(&b["dateCreated"].as_str()));
    ok(json!({ "items": items }))
}

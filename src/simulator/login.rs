//! Logins: with a Key credential (`/auth/login/init` + `/auth/login`), delegated
//! (`/auth/login/delegated`, a user action of the caller), and logout (revokes the token used).

use serde_json::json;

use super::errors::ApiError;
use super::permissions;
use super::request::{nonempty_field, ok, Reply, Req};
use super::state::{ChallengeKind, Inner};
use super::user_action::{challenge_body, verify_assertion};

/// Lifetime of login tokens (Dfns' is unknown; a day is plenty for tests).
const LOGIN_TOKEN_SECS: u64 = 86_400;

/// `POST /auth/login/init` `{"username","orgId"}` (no auth token).
pub(crate) fn init(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let username = nonempty_field(&body, "username")?;
    let org_id = nonempty_field(&body, "orgId")?;
    let unknown =
        || ApiError::unauthorized("no active user with this username in this organisation");
    if org_id != inner.org_id {
        return Err(unknown());
    }
    let user_id = inner
        .users
        .values()
        .find(|u| u.username == username && u.active)
        .map(|u| u.id.clone())
        .ok_or_else(unknown)?;
    let (challenge, identifier) = inner.issue_challenge(&user_id, ChallengeKind::Login)?;
    ok(challenge_body(
        inner,
        &user_id,
        &challenge,
        &identifier,
        false,
    ))
}

/// `POST /auth/login` `{"challengeIdentifier","firstFactor"}` → `{"token"}`.
pub(crate) fn complete(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let identifier = nonempty_field(&body, "challengeIdentifier")?;
    let challenge = inner.take_challenge(identifier)?;
    if challenge.kind != ChallengeKind::Login {
        return Err(ApiError::challenge_invalid("not a login challenge"));
    }
    let factor = body
        .get("firstFactor")
        .ok_or_else(|| ApiError::bad_request("`firstFactor` is required"))?;
    let cred_id = verify_assertion(inner, &challenge.user_id, &challenge.challenge, factor)?;
    let token = inner.issue_token(
        &challenge.user_id,
        "Temp",
        "login",
        Some(&cred_id),
        LOGIN_TOKEN_SECS,
    );
    ok(json!({ "token": token }))
}

/// `PUT /auth/logout`: revokes the token that made the request.
pub(crate) fn logout(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let token_id = req.caller()?.token_id.clone();
    for token in inner.tokens.values_mut().filter(|t| t.token_id == token_id) {
        token.active = false;
    }
    ok(json!({ "message": "success" }))
}

/// `POST /auth/login/delegated` `{"username"}` (user action): a token for an end user. The
/// simulator creates the end user on first use (Dfns would need a delegated registration).
pub(crate) fn delegated(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let username = nonempty_field(&body, "username")?;
    let existing = inner
        .users
        .values()
        .find(|u| u.username == username)
        .map(|u| (u.id.clone(), u.active, u.kind));
    let user_id = match existing {
        Some((_, _, kind)) if kind != "EndUser" => {
            return Err(ApiError::forbidden(
                "delegated login is only for end users, not employees or service accounts",
            ))
        }
        Some((_, false, _)) => return Err(ApiError::bad_request("this user is deactivated")),
        Some((id, true, _)) => id,
        None => {
            // A new end user gets its creator's reach, like any identity made without a
            // `permissionId` (permissions.rs).
            let creator = req.caller()?.clone();
            let user_id = inner.add_user(username, "EndUser", false);
            permissions::grant_new_identity(inner, &creator, &user_id, None, false)?;
            user_id
        }
    };
    let token = inner.issue_token(&user_id, "Temp", "delegated", None, LOGIN_TOKEN_SECS);
    ok(json!({ "token": token }))
}

//! Permissions: `POST/GET /permissions`, `GET/PUT /permissions/{id}`, `PUT …/archive`,
//! `POST/GET /permissions/{id}/assignments`, `DELETE …/assignments/{assignmentId}`, and the
//! check every authenticated request passes before its user action is spent.
//!
//! Who may do what (the simulator's model of Dfns'):
//! - the root service account may do everything;
//! - an identity created with a `permissionId` (a service account's token, a PAT) may do exactly
//!   the operations of the permissions assigned to it (and, for a service account or a user, to
//!   its user id), archived permissions excepted;
//! - an identity created without one gets its creator's reach: everything if the creator may do
//!   everything, else only what is later assigned to it. (Dfns grants nothing by default; the
//!   simulator's default keeps setups written for older versions working, and is documented.)
//!
//! Operation names are the official SDKs' (`Wallets:Create`, `Keys:Signatures:Create`…); a call
//! the caller may not make is a 403 naming the missing operation, and nothing runs.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::errors::ApiError;
use super::request::{nonempty_field, ok, Reply, Req};
use super::state::{Caller, Inner};
use super::util::{dfns_id, now_iso, percent_decode};

/// The operation each route needs. Routes not listed need none (the user-action and login
/// flows, a caller's own credentials, including activating and deactivating them, and PATs).
const REQUIRED: &[(&str, &str)] = &[
    ("POST /wallets", "Wallets:Create"),
    ("GET /wallets", "Wallets:Read"),
    ("GET /wallets/{}", "Wallets:Read"),
    ("PUT /wallets/{}", "Wallets:Update"),
    ("PUT /wallets/{}/tags", "Wallets:Tags:Add"),
    ("DELETE /wallets/{}/tags", "Wallets:Tags:Delete"),
    ("POST /wallets/{}/signatures", "Wallets:GenerateSignature"),
    ("GET /wallets/{}/signatures", "Wallets:Read"),
    ("GET /wallets/{}/signatures/{}", "Wallets:Read"),
    ("POST /keys", "Keys:Create"),
    ("GET /keys", "Keys:Read"),
    ("GET /keys/{}", "Keys:Read"),
    ("POST /keys/{}/signatures", "Keys:Signatures:Create"),
    ("GET /keys/{}/signatures", "Keys:Signatures:Read"),
    ("GET /keys/{}/signatures/{}", "Keys:Signatures:Read"),
    ("POST /webhooks", "Webhooks:Create"),
    ("GET /webhooks", "Webhooks:Read"),
    ("GET /webhooks/{}", "Webhooks:Read"),
    ("PUT /webhooks/{}", "Webhooks:Update"),
    ("DELETE /webhooks/{}", "Webhooks:Delete"),
    ("POST /webhooks/{}/ping", "Webhooks:Ping"),
    ("GET /webhooks/{}/events", "Webhooks:Events:Read"),
    ("GET /webhooks/{}/events/{}", "Webhooks:Events:Read"),
    ("POST /auth/service-accounts", "Auth:ServiceAccounts:Create"),
    ("GET /auth/service-accounts", "Auth:ServiceAccounts:Read"),
    ("GET /auth/service-accounts/{}", "Auth:ServiceAccounts:Read"),
    (
        "PUT /auth/service-accounts/{}/activate",
        "Auth:ServiceAccounts:Activate",
    ),
    (
        "PUT /auth/service-accounts/{}/deactivate",
        "Auth:ServiceAccounts:Deactivate",
    ),
    ("POST /auth/pats", "Auth:Pats:Create"),
    ("POST /auth/login/delegated", "Auth:Login:Delegated"),
    ("POST /auth/credentials/code", "Auth:Creds:Code:Create"),
    ("POST /permissions", "Permissions:Create"),
    ("GET /permissions", "Permissions:Read"),
    ("GET /permissions/{}", "Permissions:Read"),
    ("PUT /permissions/{}", "Permissions:Update"),
    ("PUT /permissions/{}/archive", "Permissions:Archive"),
    ("POST /permissions/{}/assignments", "Permissions:Assign"),
    (
        "GET /permissions/{}/assignments",
        "Permissions:Assignments:Read",
    ),
    (
        "DELETE /permissions/{}/assignments/{}",
        "Permissions:Revoke",
    ),
];

/// Routes that need no operation, on purpose (checked against the router by a test).
#[cfg(test)]
const OPEN: &[&str] = &[
    "POST /auth/action/init",
    "POST /auth/action",
    "POST /auth/login/init",
    "POST /auth/login",
    "PUT /auth/logout",
    "POST /auth/credentials/init",
    "POST /auth/credentials",
    "GET /auth/credentials",
    // Dfns' API reference: "No permission required" for both (a caller's own credentials).
    // The official SDKs' operation list has `Auth:Creds:Update`, but Dfns does not ask for it
    // here, so neither does the simulator.
    "PUT /auth/credentials/activate",
    "PUT /auth/credentials/deactivate",
    "POST /auth/credentials/code/init",
    "POST /auth/credentials/code/verify",
    "GET /auth/pats",
];

/// The operation `route` (`METHOD /template`) needs, if any.
pub(crate) fn required(route: &str) -> Option<&'static str> {
    REQUIRED
        .iter()
        .find(|(r, _)| *r == route)
        .map(|(_, op)| *op)
}

/// The identities whose grants a caller holds: a PAT made with a `permissionId` only its own,
/// anyone else their token's and their user's.
fn identities(inner: &Inner, caller: &Caller) -> Vec<String> {
    if inner.token_scoped.contains(&caller.token_id) {
        vec![caller.token_id.clone()]
    } else {
        vec![caller.user_id.clone(), caller.token_id.clone()]
    }
}

/// Whether `caller` may do everything.
pub(crate) fn unrestricted(inner: &Inner, caller: &Caller) -> bool {
    identities(inner, caller)
        .iter()
        .any(|id| inner.unrestricted.contains(id))
}

/// The operations assigned to `caller` (through live, unarchived permissions).
fn operations(inner: &Inner, caller: &Caller) -> BTreeSet<String> {
    let ids = identities(inner, caller);
    inner
        .assignments
        .values()
        .filter(|a| ids.iter().any(|id| a["identityId"] == *id.as_str()))
        .filter_map(|a| inner.permissions.get(a["permissionId"].as_str()?))
        .filter(|p| p["isArchived"] != true)
        .flat_map(|p| p["operations"].as_array().cloned().unwrap_or_default())
        .filter_map(|op| op.as_str().map(str::to_owned))
        .collect()
}

/// Refuses (403, nothing runs) a call on `route` that `caller` may not make.
pub(crate) fn check(inner: &Inner, caller: &Caller, route: &str) -> Result<(), ApiError> {
    let Some(operation) = required(route) else {
        return Ok(());
    };
    if unrestricted(inner, caller) || operations(inner, caller).contains(operation) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "the caller lacks permission `{operation}` (assign a permission with it to this \
         service account or token)"
    )))
}

/// Gives a new identity (a service account's user, a PAT's token) its reach: the permission
/// `permission_id` if given (then, for a PAT, only that), else its creator's.
pub(crate) fn grant_new_identity(
    inner: &mut Inner,
    creator: &Caller,
    identity: &str,
    permission_id: Option<&str>,
    token_scoped: bool,
) -> Result<(), ApiError> {
    match permission_id {
        Some(permission_id) => {
            permission_index(inner, permission_id)?;
            if token_scoped {
                inner.token_scoped.insert(identity.to_owned());
            }
            insert_assignment(inner, permission_id, identity);
        }
        None if unrestricted(inner, creator) => {
            inner.unrestricted.insert(identity.to_owned());
        }
        None => {}
    }
    Ok(())
}

/// Checks a `permissionId` exists and is usable.
fn permission_index(inner: &Inner, permission_id: &str) -> Result<(), ApiError> {
    match inner.permissions.get(permission_id) {
        Some(p) if p["isArchived"] == true => Err(ApiError::bad_request(
            "this permission is archived: unarchive it or use another",
        )),
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("permission not found")),
    }
}

fn insert_assignment(inner: &mut Inner, permission_id: &str, identity: &str) -> Value {
    let now = now_iso();
    let id = dfns_id("as");
    let entity = json!({
        "id": id,
        "permissionId": permission_id,
        "identityId": identity,
        "isImmutable": false,
        "dateCreated": now,
        "dateUpdated": now,
    });
    inner.assignments.insert(id, entity.clone());
    entity
}

/// The assignments of `identity`, as `permissionAssignments` lists them.
pub(crate) fn assignments_of(inner: &Inner, identity: &str) -> Vec<Value> {
    inner
        .assignments
        .values()
        .filter(|a| a["identityId"] == *identity)
        .map(|a| {
            let name = inner
                .permissions
                .get(a["permissionId"].as_str().unwrap_or_default())
                .map(|p| p["name"].clone())
                .unwrap_or(Value::Null);
            json!({
                "permissionId": a["permissionId"],
                "permissionName": name,
                "assignmentId": a["id"],
                "operations": inner
                    .permissions
                    .get(a["permissionId"].as_str().unwrap_or_default())
                    .map(|p| p["operations"].clone())
                    .unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn operations_field(body: &Value) -> Result<Vec<String>, ApiError> {
    let ops = body
        .get("operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("`operations` must be a list of operation names"))?;
    ops.iter()
        .map(|op| {
            op.as_str()
                .filter(|s| s.contains(':'))
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "`operations` must be names like `Wallets:Create` or `Keys:Read`",
                    )
                })
        })
        .collect()
}

fn permission_mut<'i>(inner: &'i mut Inner, raw_id: &str) -> Result<&'i mut Value, ApiError> {
    let id = percent_decode(raw_id).unwrap_or_default();
    inner
        .permissions
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("permission not found"))
}

/// `POST /permissions` `{name, operations}`.
pub(crate) fn create(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let name = nonempty_field(&body, "name")?;
    let operations = operations_field(&body)?;
    let now = now_iso();
    let id = dfns_id("pm");
    let entity = json!({
        "id": id,
        "name": name,
        "operations": operations,
        "status": "Active",
        "isImmutable": false,
        "isArchived": false,
        "dateCreated": now,
        "dateUpdated": now,
    });
    inner.permissions.insert(id, entity.clone());
    ok(entity)
}

/// `GET /permissions`.
pub(crate) fn list(inner: &mut Inner) -> Reply {
    let items: Vec<Value> = inner.permissions.values().cloned().collect();
    ok(json!({ "items": items, "nextPageToken": null }))
}

/// `GET /permissions/{id}`.
pub(crate) fn get(inner: &mut Inner, raw_id: &str) -> Reply {
    ok(permission_mut(inner, raw_id)?.clone())
}

/// `PUT /permissions/{id}` `{name?, operations?}`.
pub(crate) fn update(inner: &mut Inner, req: &Req<'_>, raw_id: &str) -> Reply {
    let body = req.json()?;
    let operations = body
        .get("operations")
        .map(|_| operations_field(&body))
        .transpose()?;
    let entity = permission_mut(inner, raw_id)?;
    if let Some(name) = body.get("name").and_then(Value::as_str) {
        entity["name"] = Value::from(name);
    }
    if let Some(operations) = operations {
        entity["operations"] = json!(operations);
    }
    entity["dateUpdated"] = Value::from(now_iso());
    ok(entity.clone())
}

/// `PUT /permissions/{id}/archive` `{isArchived}`: an archived permission grants nothing.
pub(crate) fn archive(inner: &mut Inner, req: &Req<'_>, raw_id: &str) -> Reply {
    let body = req.json()?;
    let archived = body
        .get("isArchived")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::bad_request("`isArchived` must be true or false"))?;
    let entity = permission_mut(inner, raw_id)?;
    entity["isArchived"] = Value::from(archived);
    entity["dateUpdated"] = Value::from(now_iso());
    ok(entity.clone())
}

/// `POST /permissions/{id}/assignments` `{identityId}`: a user, service-account or token id.
pub(crate) fn assign(inner: &mut Inner, req: &Req<'_>, raw_id: &str) -> Reply {
    let body = req.json()?;
    let identity = nonempty_field(&body, "identityId")?.to_owned();
    let permission_id = permission_mut(inner, raw_id)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    permission_index(inner, &permission_id)?;
    let known = inner.users.contains_key(&identity)
        || inner.tokens.values().any(|t| t.token_id == identity);
    if !known {
        return Err(ApiError::not_found("identity not found").because(
            "`identityId` must be a user, service account or token id of this organisation",
        ));
    }
    ok(insert_assignment(inner, &permission_id, &identity))
}

/// `GET /permissions/{id}/assignments`.
pub(crate) fn list_assignments(inner: &mut Inner, raw_id: &str) -> Reply {
    let permission_id = permission_mut(inner, raw_id)?["id"].clone();
    let items: Vec<Value> = inner
        .assignments
        .values()
        .filter(|a| a["permissionId"] == permission_id)
        .cloned()
        .collect();
    ok(json!({ "items": items, "nextPageToken": null }))
}

/// `DELETE /permissions/{id}/assignments/{assignmentId}`: revokes it.
pub(crate) fn revoke(inner: &mut Inner, raw_id: &str, raw_assignment_id: &str) -> Reply {
    let permission_id = permission_mut(inner, raw_id)?["id"].clone();
    let assignment_id = percent_decode(raw_assignment_id).unwrap_or_default();
    match inner.assignments.get(&assignment_id) {
        Some(a) if a["permissionId"] == permission_id => {
            inner.assignments.remove(&assignment_id);
            ok(json!({}))
        }
        _ => Err(ApiError::not_found("assignment not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route is either guarded by an operation or listed as open on purpose, and every
    /// guarded template is a route: a new endpoint cannot slip past the check unnoticed.
    #[test]
    fn every_route_is_guarded_or_deliberately_open() {
        let routes: Vec<String> = super::super::router::route_names().collect();
        for route in &routes {
            assert!(
                required(route).is_some() || OPEN.contains(&route.as_str()),
                "{route} needs an operation in REQUIRED or a place in OPEN"
            );
        }
        for (route, _) in REQUIRED {
            assert!(routes.iter().any(|r| r == route), "{route} is not a route");
        }
    }
}

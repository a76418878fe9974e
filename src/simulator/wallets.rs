//! Wallets, their signatures and tags: enough of the Dfns data plane for clients and the demo to
//! do real work. Each wallet has a real key of the Keys API (`keys.rs`: secp256k1 ECDSA, or
//! Ed25519 on EdDSA networks), named by `signingKey.id`, so a generated signature verifies
//! against `signingKey.publicKey` and the same key signs through `/keys/{keyId}/signatures`.
//!
//! Idempotency (docs/protocol.md §10): a wallet or signature request with an `externalId` already
//! seen returns the original entity when the body is the same (compared as parsed JSON), and
//! 409 when it differs.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::keys;
use super::request::{nonempty_field, ok, opt_str_field, Reply, Req};
use super::state::{Inner, Wallet};
use super::util::{b64url, b64url_decode, dfns_id, now_iso, percent_decode};

/// Networks whose wallets hold an Ed25519 key; every other network gets secp256k1.
const EDDSA_NETWORKS: &[&str] = &[
    "Solana",
    "SolanaDevnet",
    "Aptos",
    "AptosTestnet",
    "Algorand",
    "AlgorandTestnet",
    "Stellar",
    "StellarTestnet",
    "Sui",
    "SuiTestnet",
    "Near",
    "NearTestnet",
    "Ton",
    "TonTestnet",
    "Cardano",
    "CardanoPreprod",
    "Polkadot",
    "Kusama",
    "Westend",
    "Iota",
    "IotaTestnet",
    "Hedera",
    "HederaTestnet",
];

/// Largest page of `GET /wallets`.
const MAX_PAGE: usize = 100;

/// Dfns' scheme and curve for a wallet on `network`.
fn key_kind(network: &str) -> (&'static str, &'static str) {
    if EDDSA_NETWORKS.contains(&network) {
        ("EdDSA", "ed25519")
    } else {
        ("ECDSA", "secp256k1")
    }
}

/// `POST /wallets` `{network, name?, tags?, externalId?, …}`.
pub(crate) fn create(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let network = nonempty_field(&body, "network")?.to_owned();
    let name = opt_str_field(&body, "name")?.map(str::to_owned);
    let external_id = opt_str_field(&body, "externalId")?.map(str::to_owned);
    let tags = string_list(&body, "tags", false)?;
    if let Some(ext) = &external_id {
        if let Some(existing) = inner
            .wallets
            .iter()
            .find(|w| w.entity["externalId"] == *ext.as_str())
        {
            return idempotent(&existing.request, &body, &existing.entity);
        }
    }
    let (scheme, curve) = key_kind(&network);
    let key = keys::new_key(scheme, curve)?;
    let mut signing_key = json!({ "id": Value::Null });
    if let (Some(map), Value::Object(public)) =
        (signing_key.as_object_mut(), keys::public_fields(&key))
    {
        map.extend(public);
    }
    let key_id = keys::insert(inner, key, None, Value::Null);
    signing_key["id"] = Value::from(key_id.clone());
    let mut entity = json!({
        "id": dfns_id("wa"),
        "network": network,
        "status": "Active",
        "dateCreated": now_iso(),
        "custodial": true,
        "tags": tags,
        "signingKey": signing_key,
    });
    if let Some(name) = name {
        entity["name"] = Value::from(name);
    }
    if let Some(ext) = external_id {
        entity["externalId"] = Value::from(ext);
    }
    inner.stats.side_effects += 1;
    super::webhooks::emit(inner, "wallet.created", json!({ "wallet": entity }));
    inner.wallets.push(Wallet {
        entity: entity.clone(),
        key_id,
        request: body,
    });
    ok(entity)
}

/// The entity an `externalId` already made when the body is the same, else 409.
pub(crate) fn idempotent(original: &Value, now: &Value, entity: &Value) -> Reply {
    if original == now {
        ok(entity.clone())
    } else {
        Err(ApiError::conflict(
            "externalId already used with a different request body",
        ))
    }
}

/// A list of strings; `required` makes absence a 400.
pub(crate) fn string_list(
    body: &Value,
    field: &str,
    required: bool,
) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad_request(format!("`{field}` must be a list of strings"))),
        _ => Err(ApiError::bad_request(format!(
            "`{field}` must be a list of strings"
        ))),
    }
}

fn wallet_index(inner: &Inner, raw_id: &str) -> Result<usize, ApiError> {
    let id = percent_decode(raw_id).unwrap_or_default();
    inner
        .wallets
        .iter()
        .position(|w| w.entity["id"] == *id.as_str())
        .ok_or_else(|| ApiError::not_found("wallet not found"))
}

/// `GET /wallets?limit&paginationToken`.
pub(crate) fn list(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let limit = match req.query_param("limit") {
        None => MAX_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("`limit` must be an integer from 1 to {MAX_PAGE}"))
            })?,
    };
    let start = match req.query_param("paginationToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => b64url_decode(&token)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("wallets:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .filter(|n| *n <= inner.wallets.len())
            .ok_or_else(|| {
                ApiError::bad_request("`paginationToken` is not one this server issued")
            })?,
    };
    let end = (start + limit).min(inner.wallets.len());
    let items: Vec<Value> = inner.wallets[start..end]
        .iter()
        .map(|w| w.entity.clone())
        .collect();
    let next = (end < inner.wallets.len()).then(|| b64url(format!("wallets:{end}").as_bytes()));
    ok(json!({ "items": items, "nextPageToken": next }))
}

/// `GET /wallets/{id}`.
pub(crate) fn get(inner: &mut Inner, raw_id: &str) -> Reply {
    let i = wallet_index(inner, raw_id)?;
    ok(inner.wallets[i].entity.clone())
}

/// `PUT /wallets/{id}` `{"name"?}`: renames the wallet.
pub(crate) fn update(inner: &mut Inner, req: &Req<'_>, raw_id: &str) -> Reply {
    let body = req.json()?;
    let name = opt_str_field(&body, "name")?.map(str::to_owned);
    let i = wallet_index(inner, raw_id)?;
    if let Some(name) = name {
        inner.wallets[i].entity["name"] = Value::from(name);
    }
    ok(inner.wallets[i].entity.clone())
}

/// `PUT /wallets/{id}/tags` (add) and `DELETE /wallets/{id}/tags` (remove), `{"tags":[…]}`.
pub(crate) fn tags(inner: &mut Inner, req: &Req<'_>, raw_id: &str, add: bool) -> Reply {
    let body = req.json()?;
    let tags = string_list(&body, "tags", true)?;
    let i = wallet_index(inner, raw_id)?;
    let entity = &mut inner.wallets[i].entity;
    let mut current = string_list(entity, "tags", false)?;
    if add {
        for tag in tags {
            if !current.contains(&tag) {
                current.push(tag);
            }
        }
    } else {
        current.retain(|t| !tags.contains(t));
    }
    entity["tags"] = json!(current);
    ok(json!({}))
}

/// `POST /wallets/{id}/signatures`: signed with the wallet's key (see `keys::sign_request`).
pub(crate) fn generate_signature(inner: &mut Inner, req: &Req<'_>, raw_wallet_id: &str) -> Reply {
    let i = wallet_index(inner, raw_wallet_id)?;
    let wallet = &inner.wallets[i];
    let wallet_id = wallet.entity["id"].as_str().unwrap_or_default().to_owned();
    let network = wallet.entity["network"].clone();
    let key_id = wallet.key_id.clone();
    keys::sign_request(inner, req, &key_id, Some((&wallet_id, &network)))
}

/// `GET /wallets/{id}/signatures/{sigId}`.
pub(crate) fn get_signature(inner: &mut Inner, raw_wallet_id: &str, raw_sig_id: &str) -> Reply {
    let i = wallet_index(inner, raw_wallet_id)?;
    let wallet_id = inner.wallets[i].entity["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    keys::find_signature(
        inner,
        |s| s.wallet_id.as_deref() == Some(wallet_id.as_str()),
        raw_sig_id,
    )
}

/// `GET /wallets/{id}/signatures`.
pub(crate) fn list_signatures(inner: &mut Inner, raw_wallet_id: &str) -> Reply {
    let i = wallet_index(inner, raw_wallet_id)?;
    let wallet_id = inner.wallets[i].entity["id"].clone();
    let items: Vec<Value> = inner
        .signatures
        .iter()
        .filter(|s| s.wallet_id.as_deref() == wallet_id.as_str())
        .map(|s| s.entity.clone())
        .collect();
    ok(json!({ "walletId": wallet_id, "items": items, "nextPageToken": null }))
}

//! Wallets, their signatures, tags, and webhooks: enough of the Dfns data plane for clients
//! and the demo to do real work. Wallet keys are real (secp256k1 or Ed25519, in memory), so a
//! generated signature verifies against the wallet's `signingKey.publicKey`.
//!
//! Idempotency (docs/protocol.md §10): a wallet or signature request with an `externalId` already
//! seen returns the original entity when the body is the same (compared as parsed JSON), and
//! 409 when it differs.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::request::{nonempty_field, ok, opt_str_field, Reply, Req};
use super::state::{Inner, SignatureRecord, Wallet, WalletKey};
use super::util::{b64url, b64url_decode, dfns_id, now_iso, percent_decode, random_bytes};

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

fn new_wallet_key(network: &str) -> WalletKey {
    let seed: [u8; 32] = random_bytes(32).try_into().expect("32 bytes");
    if EDDSA_NETWORKS.contains(&network) {
        WalletKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    } else {
        loop {
            // A random 32-byte string is a valid scalar except with negligible probability.
            if let Ok(key) = k256::ecdsa::SigningKey::from_slice(&random_bytes(32)) {
                return WalletKey::Secp256k1(key);
            }
        }
    }
}

fn signing_key_entity(key: &WalletKey) -> Value {
    match key {
        WalletKey::Secp256k1(k) => json!({
            "scheme": "ECDSA",
            "curve": "secp256k1",
            "publicKey": hex::encode(k.verifying_key().to_sec1_point(true).as_bytes()),
        }),
        WalletKey::Ed25519(k) => json!({
            "scheme": "EdDSA",
            "curve": "ed25519",
            "publicKey": hex::encode(k.verifying_key().as_bytes()),
        }),
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
    let key = new_wallet_key(&network);
    let mut entity = json!({
        "id": dfns_id("wa"),
        "network": network,
        "status": "Active",
        "dateCreated": now_iso(),
        "custodial": true,
        "tags": tags,
        "signingKey": signing_key_entity(&key),
    });
    if let Some(name) = name {
        entity["name"] = Value::from(name);
    }
    if let Some(ext) = external_id {
        entity["externalId"] = Value::from(ext);
    }
    inner.stats.side_effects += 1;
    inner.wallets.push(Wallet {
        entity: entity.clone(),
        key,
        request: body,
    });
    ok(entity)
}

fn idempotent(original: &Value, now: &Value, entity: &Value) -> Reply {
    if original == now {
        ok(entity.clone())
    } else {
        Err(ApiError::conflict(
            "externalId already used with a different request body",
        ))
    }
}

/// A list of strings; `required` makes absence a 400.
fn string_list(body: &Value, field: &str, required: bool) -> Result<Vec<String>, ApiError> {
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

/// Parses `0x`-prefixed or bare hex.
fn hex_field(body: &Value, field: &str) -> Result<Vec<u8>, ApiError> {
    let text = nonempty_field(body, field)?;
    hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|_| ApiError::bad_request(format!("`{field}` must be hex")))
}

/// `POST /wallets/{id}/signatures`: `Hash` (32 bytes, signed as is) and `Message` (Ed25519
/// signs it; ECDSA signs its SHA-256, the simulator having no Keccak) are signed for real.
pub(crate) fn generate_signature(inner: &mut Inner, req: &Req<'_>, raw_wallet_id: &str) -> Reply {
    let caller = req.caller()?.clone();
    let body = req.json()?;
    let i = wallet_index(inner, raw_wallet_id)?;
    let wallet_id = inner.wallets[i].entity["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let external_id = opt_str_field(&body, "externalId")?.map(str::to_owned);
    if let Some(ext) = &external_id {
        if let Some(existing) = inner
            .signatures
            .iter()
            .find(|s| s.wallet_id == wallet_id && s.entity["externalId"] == *ext.as_str())
        {
            return idempotent(&existing.request, &body, &existing.entity);
        }
    }
    let kind = nonempty_field(&body, "kind")?;
    let data = match kind {
        "Hash" => {
            let hash = hex_field(&body, "hash")?;
            if hash.len() != 32 {
                return Err(ApiError::bad_request("`hash` must be 32 bytes of hex"));
            }
            hash
        }
        "Message" => hex_field(&body, "message")?,
        other => {
            return Err(ApiError::bad_request(format!(
                "signature kind {other:?} is not supported by the simulator (use Hash or Message)"
            )))
        }
    };
    let signature = sign(&inner.wallets[i].key, kind, &data)?;
    let now = now_iso();
    let mut entity = json!({
        "id": dfns_id("sig"),
        "keyId": format!("key-{}", &wallet_id[3..]),
        "walletId": wallet_id,
        "network": inner.wallets[i].entity["network"],
        "requester": { "userId": caller.user_id, "tokenId": caller.token_id },
        "requestBody": body,
        "status": "Signed",
        "signature": signature,
        "dateRequested": now,
        "dateSigned": now,
    });
    if let Some(ext) = external_id {
        entity["externalId"] = Value::from(ext);
    }
    inner.stats.side_effects += 1;
    inner.signatures.push(SignatureRecord {
        entity: entity.clone(),
        wallet_id,
        request: body,
    });
    ok(entity)
}

fn sign(key: &WalletKey, kind: &str, data: &[u8]) -> Result<Value, ApiError> {
    match key {
        WalletKey::Secp256k1(k) => {
            use sha2::Digest;
            let digest = if kind == "Hash" {
                data.to_vec()
            } else {
                sha2::Sha256::digest(data).to_vec()
            };
            let (sig, recid) = k.sign_prehash_recoverable(&digest);
            let (r, s) = sig.split_bytes();
            Ok(json!({
                "r": format!("0x{}", hex::encode(r)),
                "s": format!("0x{}", hex::encode(s)),
                "recid": recid.to_byte(),
                "encoded": format!("0x{}{}{:02x}", hex::encode(r), hex::encode(s), recid.to_byte()),
            }))
        }
        WalletKey::Ed25519(k) => {
            use ed25519_dalek::Signer;
            let sig = k.sign(data).to_bytes();
            Ok(json!({
                "r": format!("0x{}", hex::encode(&sig[..32])),
                "s": format!("0x{}", hex::encode(&sig[32..])),
                "encoded": format!("0x{}", hex::encode(sig)),
            }))
        }
    }
}

/// `GET /wallets/{id}/signatures/{sigId}`.
pub(crate) fn get_signature(inner: &mut Inner, raw_wallet_id: &str, raw_sig_id: &str) -> Reply {
    let i = wallet_index(inner, raw_wallet_id)?;
    let wallet_id = inner.wallets[i].entity["id"].clone();
    let sig_id = percent_decode(raw_sig_id).unwrap_or_default();
    inner
        .signatures
        .iter()
        .find(|s| s.entity["walletId"] == wallet_id && s.entity["id"] == *sig_id.as_str())
        .map(|s| (StatusCode::OK, s.entity.clone()))
        .ok_or_else(|| ApiError::not_found("signature not found"))
}

/// `GET /wallets/{id}/signatures`.
pub(crate) fn list_signatures(inner: &mut Inner, raw_wallet_id: &str) -> Reply {
    let i = wallet_index(inner, raw_wallet_id)?;
    let wallet_id = inner.wallets[i].entity["id"].clone();
    let items: Vec<Value> = inner
        .signatures
        .iter()
        .filter(|s| s.entity["walletId"] == wallet_id)
        .map(|s| s.entity.clone())
        .collect();
    ok(json!({ "walletId": wallet_id, "items": items, "nextPageToken": null }))
}

/// `POST /webhooks` `{url, events, description?}`.
pub(crate) fn create_webhook(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let url = nonempty_field(&body, "url")?;
    let events = string_list(&body, "events", true)?;
    let id = dfns_id("wh");
    let entity = json!({
        "id": id,
        "url": url,
        "events": events,
        "description": body.get("description").cloned().unwrap_or(Value::from("")),
        "status": "Enabled",
        "dateCreated": now_iso(),
        "secret": format!("whsec_{}", b64url(&random_bytes(24))),
    });
    inner.webhooks.insert(id, entity.clone());
    ok(entity)
}

/// `GET /webhooks/{id}`.
pub(crate) fn get_webhook(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = percent_decode(raw_id).unwrap_or_default();
    let mut entity = inner
        .webhooks
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("webhook not found"))?;
    if let Some(map) = entity.as_object_mut() {
        map.remove("secret");
    }
    ok(entity)
}

/// `POST /webhooks/{id}/ping`: the simulator delivers nothing, and says so.
pub(crate) fn ping_webhook(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = percent_decode(raw_id).unwrap_or_default();
    if !inner.webhooks.contains_key(&id) {
        return Err(ApiError::not_found("webhook not found"));
    }
    ok(
        json!({ "status": "200", "data": "", "error": "", "note": "the simulator does not deliver webhooks" }),
    )
}

/// `DELETE /webhooks/{id}`.
pub(crate) fn delete_webhook(inner: &mut Inner, raw_id: &str) -> Reply {
    let id = percent_decode(raw_id).unwrap_or_default();
    inner
        .webhooks
        .remove(&id)
        .ok_or_else(|| ApiError::not_found("webhook not found"))?;
    ok(json!({ "deleted": true }))
}

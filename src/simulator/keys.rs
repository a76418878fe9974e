//! The Keys API and every signature the simulator makes: `POST/GET /keys`, `GET /keys/{id}`,
//! `POST/GET /keys/{keyId}/signatures`, `GET /keys/{keyId}/signatures/{id}`, and the signing
//! behind `POST /wallets/{id}/signatures` (a wallet signs with its key).
//!
//! Keys are real (secp256k1 ECDSA or Ed25519, in memory), so a signature verifies against the
//! key's `publicKey`. Shapes are Dfns': the official Rust SDK's types require `wallets` and
//! `store` on `GET /keys/{id}` and a top-level `keyId` on the signature list, and accept only
//! the exact `scheme`/`curve` spellings used here (`tests/dfns_sdk_adapter.rs` decodes them).

use serde_json::{json, Value};

use super::errors::ApiError;
use super::request::{nonempty_field, ok, opt_str_field, Reply, Req};
use super::state::{Inner, KeyRecord, SignatureRecord, WalletKey};
use super::util::{dfns_id, now_iso, percent_decode, random_bytes};
use super::wallets::idempotent;

/// Largest page of `GET /keys`.
const MAX_PAGE: usize = 100;

/// A new random key of `scheme`/`curve` (Dfns' spellings), or a 400 naming what is supported.
pub(crate) fn new_key(scheme: &str, curve: &str) -> Result<WalletKey, ApiError> {
    match (scheme, curve) {
        ("ECDSA", "secp256k1") => loop {
            // A random 32-byte string is a valid scalar except with negligible probability.
            if let Ok(key) = k256::ecdsa::SigningKey::from_slice(&random_bytes(32)) {
                return Ok(WalletKey::Secp256k1(key));
            }
        },
        ("EdDSA", "ed25519") => {
            let seed: [u8; 32] = random_bytes(32).try_into().expect("32 bytes");
            Ok(WalletKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &seed,
            )))
        }
        _ => Err(ApiError::bad_request(format!(
            "key scheme {scheme:?} on curve {curve:?} is not supported by the simulator \
             (use ECDSA on secp256k1 or EdDSA on ed25519)"
        ))),
    }
}

/// `{scheme, curve, publicKey}` of a key: what a wallet's `signingKey` carries (with `id`).
pub(crate) fn public_fields(key: &WalletKey) -> Value {
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

/// Stores `key` as a new key entity and returns its id.
pub(crate) fn insert(
    inner: &mut Inner,
    key: WalletKey,
    name: Option<&str>,
    request: Value,
) -> String {
    let id = dfns_id("key");
    let mut entity = json!({ "id": id });
    if let (Some(map), Value::Object(public)) = (entity.as_object_mut(), public_fields(&key)) {
        map.extend(public);
        map.insert("status".into(), "Active".into());
        map.insert("custodial".into(), true.into());
        map.insert("dateCreated".into(), now_iso().into());
        if let Some(name) = name {
            map.insert("name".into(), name.into());
        }
        if let Some(ext) = request.get("externalId").and_then(Value::as_str) {
            map.insert("externalId".into(), ext.into());
        }
    }
    inner.keys.push(KeyRecord {
        entity,
        key,
        request,
    });
    id
}

fn key_index(inner: &Inner, raw_id: &str) -> Result<usize, ApiError> {
    let id = percent_decode(raw_id).unwrap_or_default();
    inner
        .keys
        .iter()
        .position(|k| k.entity["id"] == *id.as_str())
        .ok_or_else(|| ApiError::not_found("key not found"))
}

/// `POST /keys` `{scheme, curve, name?, externalId?}`.
pub(crate) fn create(inner: &mut Inner, req: &Req<'_>) -> Reply {
    let body = req.json()?;
    let scheme = nonempty_field(&body, "scheme")?;
    let curve = nonempty_field(&body, "curve")?;
    let name = opt_str_field(&body, "name")?.map(str::to_owned);
    if let Some(ext) = opt_str_field(&body, "externalId")? {
        if let Some(existing) = inner.keys.iter().find(|k| k.entity["externalId"] == *ext) {
            return idempotent(&existing.request, &body, &existing.entity);
        }
    }
    let key = new_key(scheme, curve)?;
    let id = insert(inner, key, name.as_deref(), body);
    inner.stats.side_effects += 1;
    let i = key_index(inner, &id)?;
    ok(inner.keys[i].entity.clone())
}

/// `GET /keys`: `{items, nextPageToken}` (one page of up to 100; the simulator does not page).
pub(crate) fn list(inner: &mut Inner) -> Reply {
    let items: Vec<Value> = inner
        .keys
        .iter()
        .take(MAX_PAGE)
        .map(|k| k.entity.clone())
        .collect();
    ok(json!({ "items": items, "nextPageToken": null }))
}

/// `GET /keys/{id}`: the key with the wallets that use it and its `store` (none here).
pub(crate) fn get(inner: &mut Inner, raw_id: &str) -> Reply {
    let i = key_index(inner, raw_id)?;
    let mut entity = inner.keys[i].entity.clone();
    let key_id = entity["id"].clone();
    let wallets: Vec<Value> = inner
        .wallets
        .iter()
        .filter(|w| w.key_id == *key_id.as_str().unwrap_or_default())
        .map(|w| json!({ "id": w.entity["id"], "network": w.entity["network"] }))
        .collect();
    entity["wallets"] = Value::from(wallets);
    entity["store"] = Value::Null;
    ok(entity)
}

/// `POST /keys/{keyId}/signatures`.
pub(crate) fn generate_signature(inner: &mut Inner, req: &Req<'_>, raw_key_id: &str) -> Reply {
    let i = key_index(inner, raw_key_id)?;
    let key_id = inner.keys[i].entity["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    sign_request(inner, req, &key_id, None)
}

/// Signs what a signature request body asks for with key `key_id` and records it. `wallet`
/// (id and network) is set for `POST /wallets/{id}/signatures`, whose entity names them.
pub(crate) fn sign_request(
    inner: &mut Inner,
    req: &Req<'_>,
    key_id: &str,
    wallet: Option<(&str, &Value)>,
) -> Reply {
    let caller = req.caller()?.clone();
    let body = req.json()?;
    let external_id = opt_str_field(&body, "externalId")?.map(str::to_owned);
    if let Some(ext) = &external_id {
        if let Some(existing) = inner
            .signatures
            .iter()
            .find(|s| s.key_id == key_id && s.entity["externalId"] == *ext.as_str())
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
    let key = &inner
        .keys
        .iter()
        .find(|k| k.entity["id"] == *key_id)
        .ok_or_else(|| ApiError::not_found("key not found"))?
        .key;
    // A wallet's network decides how a message is hashed; a key signs for the `network` its
    // request names, if any.
    let network = match wallet {
        Some((_, network)) => network.as_str().map(str::to_owned),
        None => body
            .get("network")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let signature = sign(key, kind, &data, network.as_deref());
    let now = now_iso();
    let mut entity = json!({
        "id": dfns_id("sig"),
        "keyId": key_id,
        "requester": { "userId": caller.user_id, "tokenId": caller.token_id },
        "requestBody": body,
        "status": "Signed",
        "signature": signature,
        "dateRequested": now,
        "dateSigned": now,
    });
    if let Some((wallet_id, network)) = wallet {
        entity["walletId"] = Value::from(wallet_id);
        entity["network"] = network.clone();
    } else if let Some(network) = body.get("network").filter(|n| n.is_string()) {
        entity["network"] = network.clone();
    }
    if let Some(ext) = external_id {
        entity["externalId"] = Value::from(ext);
    }
    inner.stats.side_effects += 1;
    let kind = if wallet.is_some() {
        "wallet.signature.signed"
    } else {
        "key.signature.signed"
    };
    super::webhooks::emit(inner, kind, json!({ "signature": entity }));
    inner.signatures.push(SignatureRecord {
        entity: entity.clone(),
        key_id: key_id.to_owned(),
        wallet_id: wallet.map(|(id, _)| id.to_owned()),
        request: body,
    });
    ok(entity)
}

/// Parses `0x`-prefixed or bare hex.
fn hex_field(body: &Value, field: &str) -> Result<Vec<u8>, ApiError> {
    let text = nonempty_field(body, field)?;
    hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|_| ApiError::bad_request(format!("`{field}` must be hex")))
}

/// EVM networks: a `Message` is signed as `personal_sign` does (EIP-191).
const EVM_NETWORKS: &[&str] = &[
    "ArbitrumOne",
    "ArbitrumSepolia",
    "AvalancheC",
    "AvalancheCFuji",
    "Base",
    "BaseSepolia",
    "Berachain",
    "BerachainBepolia",
    "Bob",
    "BobSepolia",
    "Bsc",
    "BscTestnet",
    "Celo",
    "CeloSepolia",
    "Ethereum",
    "EthereumClassic",
    "EthereumClassicMordor",
    "EthereumSepolia",
    "EthereumHoodi",
    "FlareC",
    "FlareCCoston2",
    "FlowEvm",
    "FlowEvmTestnet",
    "HyperEvm",
    "HyperEvmTestnet",
    "Ink",
    "InkSepolia",
    "Monad",
    "MonadTestnet",
    "Optimism",
    "OptimismSepolia",
    "Plume",
    "PlumeSepolia",
    "Polygon",
    "PolygonAmoy",
    "Sonic",
    "SonicTestnet",
    "Xdc",
    "XdcApothem",
    "XLayer",
    "XLayerSepolia",
];

/// The 32 bytes an ECDSA key signs for a `Message` on `network`: Keccak-256 of
/// `"\x19Ethereum Signed Message:\n" + len + message` on EVM networks (EIP-191, what Dfns
/// signs there), else SHA-256 of the message (the simulator's choice for networks whose
/// message format it does not implement, and for keys signing without a network).
fn message_digest(network: Option<&str>, message: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    if network.is_some_and(|n| EVM_NETWORKS.contains(&n)) {
        let mut keccak = sha3::Keccak256::new();
        keccak.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
        keccak.update(message);
        keccak.finalize().to_vec()
    } else {
        sha2::Sha256::digest(message).to_vec()
    }
}

/// `Hash` (32 bytes) is signed as is; `Message` is signed by Ed25519 as is and by ECDSA over
/// [`message_digest`]. ECDSA answers carry `r`, `s`, `recid` and `encoded` = `r‖s‖recid`,
/// Ed25519 answers `r`, `s` and `encoded` = the 64-byte signature, all `0x`-prefixed hex, as
/// Dfns returns them.
fn sign(key: &WalletKey, kind: &str, data: &[u8], network: Option<&str>) -> Value {
    match key {
        WalletKey::Secp256k1(k) => {
            let digest = if kind == "Hash" {
                data.to_vec()
            } else {
                message_digest(network, data)
            };
            let (sig, recid) = k.sign_prehash_recoverable(&digest);
            let (r, s) = sig.split_bytes();
            json!({
                "r": format!("0x{}", hex::encode(r)),
                "s": format!("0x{}", hex::encode(s)),
                "recid": recid.to_byte(),
                "encoded": format!("0x{}{}{:02x}", hex::encode(r), hex::encode(s), recid.to_byte()),
            })
        }
        WalletKey::Ed25519(k) => {
            use ed25519_dalek::Signer;
            let sig = k.sign(data).to_bytes();
            json!({
                "r": format!("0x{}", hex::encode(&sig[..32])),
                "s": format!("0x{}", hex::encode(&sig[32..])),
                "encoded": format!("0x{}", hex::encode(sig)),
            })
        }
    }
}

/// `GET /keys/{keyId}/signatures/{id}`.
pub(crate) fn get_signature(inner: &mut Inner, raw_key_id: &str, raw_sig_id: &str) -> Reply {
    let i = key_index(inner, raw_key_id)?;
    let key_id = inner.keys[i].entity["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    find_signature(inner, |s| s.key_id == key_id, raw_sig_id)
}

/// The signature `raw_sig_id` among those `belongs` accepts, or 404.
pub(crate) fn find_signature(
    inner: &Inner,
    belongs: impl Fn(&SignatureRecord) -> bool,
    raw_sig_id: &str,
) -> Reply {
    let sig_id = percent_decode(raw_sig_id).unwrap_or_default();
    inner
        .signatures
        .iter()
        .find(|s| belongs(s) && s.entity["id"] == *sig_id.as_str())
        .map(|s| s.entity.clone())
        .ok_or_else(|| ApiError::not_found("signature not found"))
        .and_then(ok)
}

/// `GET /keys/{keyId}/signatures`: `{keyId, items, nextPageToken}`.
pub(crate) fn list_signatures(inner: &mut Inner, raw_key_id: &str) -> Reply {
    let i = key_index(inner, raw_key_id)?;
    let key_id = inner.keys[i].entity["id"].clone();
    let items: Vec<Value> = inner
        .signatures
        .iter()
        .filter(|s| s.entity["keyId"] == key_id)
        .map(|s| s.entity.clone())
        .collect();
    ok(json!({ "keyId": key_id, "items": items, "nextPageToken": null }))
}

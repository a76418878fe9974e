#!/usr/bin/env python3
"""Drives the official Dfns Python SDK (`dfns-sdk` 1.0.4, module `dfns_sdk`, pinned in
requirements.lock) against a running dfns-signer simulator. tests/py_sdk.rs starts the simulator,
runs this script in a virtual environment made from requirements.lock, and asserts on its output.

Environment (required unless marked optional):
  DFNS_API_URL      the simulator's base URL, e.g. http://127.0.0.1:40301
  DFNS_AUTH_TOKEN   the root service account's token
  DFNS_CRED_ID      the root credential's id
  DFNS_PRIVATE_KEY  the root credential's private key: PEM text, or the path of a PEM file
  DFNS_USERNAME     optional: the root user's username; enables the login check
  DFNS_ORG_ID       optional: the organisation id (default: from the token's claims)
  DFNS_FAULTS       optional, "1": the simulator answers `PUT /wallets/{id}` with 202 (policy
                    pending) and `POST /webhooks/{id}/ping` with 429 (`Retry-After: 3`), as
                    tests/py_sdk.rs starts it; the policyPending and rateLimited checks run
  DFNS_ONLY         optional: comma-separated check names to run (debugging)

Output, on stdout: one line per check, `PASS name  facts`, `FAIL name  Error: message`, `SKIP
name  why`, or `INFO name  facts` (a fact recorded for the Rust test to judge, counted neither
way); then exactly `N passed, N failed`; then, last, one JSON line
`{"sdk": "1.0.4", "results": {name: {"ok": bool, ...facts}}, "passed": N, "failed": N,
"requests": N}`. Exit status 0 when no check failed, 1 when one did, 2 on a usage error. Tokens
and private keys are never printed.

How refusals are provoked: the SDK's private httpx.Client (`client._http._client`, stable in the
pinned 1.0.4) gets a wrapper around `request` that can, on the next signed request only, replay
the previous X-DFNS-USERACTION, change the JSON body, or send the request to another path; and an
httpx request hook records what went over the wire.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import secrets
import sys
import traceback
from typing import Any, Callable

# httpx (the SDK's transport) honours HTTP(S)_PROXY and ALL_PROXY, and does not exempt loopback
# by itself: the simulator listens on 127.0.0.1, so it must never go through a proxy.
_no_proxy = [h for h in os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",") if h]
for _host in ("127.0.0.1", "localhost", "::1"):
    if _host not in _no_proxy:
        _no_proxy.append(_host)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(_no_proxy)

from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils  # noqa: E402

from dfns_sdk import (  # noqa: E402
    DfnsClient,
    DfnsClientConfig,
    DfnsDelegatedClient,
    DfnsDelegatedClientConfig,
    DfnsError,
    KeySigner,
)

SDK_VERSION = importlib.metadata.version("dfns-sdk")


def env(name: str, required: bool = True) -> str | None:
    value = os.environ.get(name)
    if required and not value:
        print(f"usage: {name} is not set (see the docstring of {sys.argv[0]})", file=sys.stderr)
        sys.exit(2)
    return value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt_claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


BASE_URL = env("DFNS_API_URL")
AUTH_TOKEN = env("DFNS_AUTH_TOKEN")
CRED_ID = env("DFNS_CRED_ID")
_key = env("DFNS_PRIVATE_KEY")
ROOT_KEY_PEM = _key if "-----BEGIN" in _key else open(_key, encoding="utf-8").read()
USERNAME = env("DFNS_USERNAME", required=False)
FAULTS = env("DFNS_FAULTS", required=False) == "1"
ONLY = {n.strip() for n in (env("DFNS_ONLY", required=False) or "").split(",") if n.strip()}
ORG_ID = env("DFNS_ORG_ID", required=False) or jwt_claims(AUTH_TOKEN)["https://custom/app_metadata"]["orgId"]


class Tap:
    """Sits between the SDK and its httpx.Client: records what is sent and, when `mode` says so,
    breaks the next signed request (the one carrying X-DFNS-USERACTION) after it was signed."""

    def __init__(self) -> None:
        self.mode = "pass"  # "pass" | "replay" | "tamper-body" | "change-path"
        self.path_change: tuple[str, str] = ("", "")  # for "change-path": (from, to) in the URL
        self.last_user_action: str | None = None
        self.requests: list[str] = []
        self.signed_payloads: list[str] = []  # the userActionPayload of each /auth/action/init
        self.last_signed_request: dict[str, Any] | None = None

    def install(self, client: DfnsClient | DfnsDelegatedClient) -> None:
        http = client._http._client  # the SDK's httpx.Client (private; stable in the pinned 1.0.4)
        real_request = http.request

        def request(*args: Any, **kwargs: Any) -> Any:
            # The SDK calls self._client.request(method=, url=, headers=, json=), keywords only.
            headers = dict(kwargs.get("headers") or {})
            user_action = headers.get("X-DFNS-USERACTION")
            if user_action:
                if self.mode == "replay" and self.last_user_action:
                    headers["X-DFNS-USERACTION"] = self.last_user_action
                elif self.mode == "tamper-body" and isinstance(kwargs.get("json"), dict):
                    body = dict(kwargs["json"])
                    body["name"] = str(body.get("name", "")).replace("tampered-before", "tampered-after")
                    kwargs["json"] = body
                elif self.mode == "change-path":
                    old, new = self.path_change
                    kwargs["url"] = str(kwargs["url"]).replace(old, new)
                else:
                    self.last_user_action = user_action
                self.mode = "pass"
            kwargs["headers"] = headers
            return real_request(*args, **kwargs)

        def on_request(req: Any) -> None:  # httpx event hook: the request as it is sent
            self.requests.append(f"{req.method} {req.url.path}")
            if req.url.path.endswith("/auth/action/init"):
                self.signed_payloads.append(json.loads(req.content)["userActionPayload"])
            elif "x-dfns-useraction" in req.headers:
                self.last_signed_request = {
                    "method": req.method,
                    "path": req.url.path,
                    "headers": sorted(k.lower() for k in req.headers.keys()),
                    "contentType": req.headers.get("content-type"),
                    "userAgent": req.headers.get("user-agent"),
                    "body": req.content.decode("utf-8"),
                }

        http.request = request  # an instance attribute shadows the method the SDK calls
        http.event_hooks["request"].append(on_request)


tap = Tap()


def client_for(token: str, signer: KeySigner | None) -> DfnsClient:
    client = DfnsClient(DfnsClientConfig(auth_token=token, base_url=BASE_URL, signer=signer))
    tap.install(client)
    return client


def new_key(kind: str) -> tuple[Any, str, str]:
    """A fresh key ("p256" or "ed25519"): the key, its PKCS#8 PEM (what KeySigner takes) and its
    SPKI PEM public key (what Dfns takes)."""
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "p256" else ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return key, private_pem, public_pem


def key_attestation(challenge: dict[str, Any], signing_key: Any, public_pem: str, cred_id: str) -> dict[str, Any]:
    """A Key credential's attestation, as @dfns/sdk-browser's BrowserKeySigner.create builds it
    (dfns-sdk 1.0.4 has no helper): clientData {"type":"key.create","challenge"}, and the key's
    signature (hex) over {"clientDataHash": hex(sha256(clientData)), "publicKey": PEM}."""
    client_data = json.dumps({"type": "key.create", "challenge": challenge["challenge"]}, separators=(",", ":")).encode()
    fingerprint = json.dumps(
        {"clientDataHash": hashlib.sha256(client_data).hexdigest(), "publicKey": public_pem},
        separators=(",", ":"),
    ).encode()
    if isinstance(signing_key, ed25519.Ed25519PrivateKey):
        signature = signing_key.sign(fingerprint)
    else:
        signature = signing_key.sign(fingerprint, ec.ECDSA(hashes.SHA256()))
    return {
        "credentialKind": "Key",
        "credentialInfo": {
            "credId": cred_id,
            "clientData": b64url(client_data),
            "attestationData": b64url(json.dumps({"publicKey": public_pem, "signature": signature.hex()}).encode()),
        },
    }


def unhex(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def verify_secp256k1_hash(public_key_hex: str, hash_hex: str, sig: dict[str, Any]) -> None:
    """Checks an ECDSA signature {r, s} over a 32-byte hash (signed as given, not hashed again)
    against a SEC1 secp256k1 public key, with `cryptography`: nothing of the simulator's."""
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), unhex(public_key_hex))
    der = utils.encode_dss_signature(int.from_bytes(unhex(sig["r"]), "big"), int.from_bytes(unhex(sig["s"]), "big"))
    try:
        key.verify(der, unhex(hash_hex), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        raise AssertionError("the signature does not verify against the wallet's signingKey.publicKey") from None


def refused(fn: Callable[[], Any]) -> dict[str, Any]:
    """Runs fn, which must raise DfnsError: its status, message and `details.reason`."""
    try:
        answer = fn()
    except DfnsError as e:
        facts: dict[str, Any] = {"status": e.status_code, "message": e.message}
        if isinstance(e.details, dict) and "reason" in e.details:
            facts["reason"] = e.details["reason"]
        return facts
    raise AssertionError(f"the request was accepted, and should have been refused: {str(answer)[:200]}")


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


root_signer = KeySigner(credential_id=CRED_ID, private_key=ROOT_KEY_PEM)
root = client_for(AUTH_TOKEN, root_signer)
state: dict[str, Any] = {}
HASH = "0x" + hashlib.sha256(b"dfns-signer").hexdigest()  # 32 bytes, hex
USER_ACTION_INVALID = "user action signature is missing or invalid"
checks: list[tuple[str, Callable[[], dict[str, Any]]]] = []


def check(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    checks.append((fn.__name__, fn))
    return fn


# ---- wallets ----


@check
def createWallet() -> dict[str, Any]:
    body = {"network": "EthereumSepolia", "name": "py-sdk wallet", "externalId": "py-ext-1"}
    wallet = root.wallets.create_wallet(body)
    again = root.wallets.create_wallet(body)  # same externalId and body: the same wallet
    state["wallet"] = wallet
    wire = tap.last_signed_request or {}
    expect(wallet["id"].startswith("wa-"), f"wallet id {wallet['id']!r}")
    expect(again["id"] == wallet["id"], "the same externalId and body gave another wallet")
    expect(wire.get("body") == tap.signed_payloads[-1], "the body sent is not the signed userActionPayload")
    key = wallet.get("signingKey") or {}
    expect(key.get("curve") == "secp256k1" and bool(key.get("publicKey")), f"signingKey {key}")
    return {
        "walletId": wallet["id"],
        "name": wallet.get("name"),
        "idempotentId": again["id"],
        "signingKey": key,
        "wire": wire,  # the signed request as sent: header names, content type, user agent, body
    }


@check
def nonAsciiBody() -> dict[str, Any]:
    # dfns-sdk 1.0.4 signs json.dumps(body, separators=(",", ":")), which escapes non-ASCII
    # ("é" -> "\u00e9"), but httpx 0.28 sends json.dumps(body, ensure_ascii=False, ...), raw
    # UTF-8. A server comparing the body with the signed payload byte for byte refuses it.
    body = {"network": "EthereumSepolia", "name": 'Trésorerie ✓ "q" / <tag>'}
    facts: dict[str, Any] = {"_info": True}  # recorded, not judged here: the Rust test decides
    try:
        wallet = root.wallets.create_wallet(body)
        facts.update(accepted=True, name=wallet.get("name"))
    except DfnsError as e:
        facts.update(accepted=False, status=e.status_code, message=e.message, reason=(e.details or {}).get("reason"))
    facts["signedPayload"] = tap.signed_payloads[-1]
    facts["sentBody"] = (tap.last_signed_request or {}).get("body")
    facts["identical"] = facts["signedPayload"] == facts["sentBody"]
    return facts


@check
def readWallets() -> dict[str, Any]:
    wallet_id = state["wallet"]["id"]
    got = root.wallets.get_wallet(wallet_id)
    page = root.wallets.list_wallets({"limit": 10})
    listed = [w["id"] for w in page["items"]]
    expect(got["id"] == wallet_id, "get_wallet returned another wallet")
    expect(got.get("signingKey", {}).get("publicKey") == state["wallet"]["signingKey"]["publicKey"], "signingKey changed")
    expect(wallet_id in listed, "list_wallets does not list the new wallet")
    return {"gotId": got["id"], "listed": listed}


@check
def tagWallet() -> dict[str, Any]:
    wallet_id = state["wallet"]["id"]
    root.wallets.tag_wallet(wallet_id, {"tags": ["t1", "t2"]})
    root.wallets.untag_wallet(wallet_id, {"tags": ["t1"]})  # a DELETE with a JSON body
    tags = root.wallets.get_wallet(wallet_id)["tags"]
    expect(tags == ["t2"], f"tags are {tags}")
    return {"tags": tags}


# ---- keys API: a wallet signs through its key (dfns-sdk 1.0.4 has no wallet-signature calls) ----


@check
def keySignature() -> dict[str, Any]:
    wallet = state["wallet"]
    signing_key = wallet["signingKey"]
    key_id = signing_key.get("id")
    expect(bool(key_id), f"the wallet's signingKey has no id: {signing_key}")
    sig = root.keys.generate_signature(key_id, {"kind": "Hash", "hash": HASH})  # POST /keys/{keyId}/signatures
    got = root.keys.get_signature(key_id, sig["id"])  # GET /keys/{keyId}/signatures/{signatureId}
    documented = ("id", "keyId", "requester", "requestBody", "status", "signature", "dateRequested", "dateSigned")
    missing = [f for f in documented if f not in sig]
    expect(not missing, f"the signature lacks {missing}: {sorted(sig)}")
    expect(sig["status"] == "Signed", f"status {sig['status']}")
    expect(sig["keyId"] == key_id, f"keyId {sig['keyId']} is not the wallet's key {key_id}")
    expect((sig["requestBody"] or {}).get("kind") == "Hash", f"requestBody {sig['requestBody']}")
    parts = [p for p in ("r", "s", "recid", "encoded") if p not in (sig["signature"] or {})]
    expect(not parts, f"signature lacks {parts}: {sig['signature']}")
    verify_secp256k1_hash(signing_key["publicKey"], HASH, sig["signature"])
    expect(
        got["id"] == sig["id"] and got.get("keyId") == key_id,
        f"get_signature returned {got.get('id')} of {got.get('keyId')}",
    )
    expect(got.get("status") == "Signed" and got.get("signature") == sig["signature"], "get_signature differs from the answer to the request")
    return {
        "keyId": key_id,
        "signatureId": sig["id"],
        "status": sig["status"],
        "hash": HASH,
        "signature": sig["signature"],
        "requester": sig["requester"],
        "requestBody": sig["requestBody"],
        "network": sig.get("network"),
        "gotStatus": got.get("status"),
    }


# ---- credentials, service accounts, personal access tokens ----


@check
def registerKeyCredential() -> dict[str, Any]:
    key, private_pem, public_pem = new_key("p256")
    new_cred_id = b64url(secrets.token_bytes(32))
    challenge = root.auth.create_credential_challenge({"kind": "Key"})
    body = {
        **key_attestation(challenge, key, public_pem, new_cred_id),
        "challengeIdentifier": challenge["challengeIdentifier"],
        "credentialName": "py-sdk-key",
    }
    credential = root.auth.create_credential(body)
    # The new credential signs a user action of its own.
    with_new_key = client_for(AUTH_TOKEN, KeySigner(credential_id=new_cred_id, private_key=private_pem))
    wallet = with_new_key.wallets.create_wallet({"network": "Solana"})
    listed = [c["credentialId"] for c in root.auth.list_credentials()["items"]]
    expect(credential["credentialId"] == new_cred_id, "registered under another credential id")
    expect(new_cred_id in listed and CRED_ID in listed, f"list_credentials: {listed}")
    expect(wallet["signingKey"]["curve"] == "ed25519", "Solana wallets get an Ed25519 key")
    return {
        "credentialId": credential["credentialId"],
        "newCredId": new_cred_id,
        "walletWithNewKey": wallet["id"],
        "walletCurve": wallet["signingKey"]["curve"],
        "listed": listed,
    }


@check
def registerBadAttestation() -> dict[str, Any]:
    _, _, public_pem = new_key("p256")
    other, _, _ = new_key("p256")
    challenge = root.auth.create_credential_challenge({"kind": "Key"})
    body = {  # names one key (public_pem) but is signed by another (other)
        **key_attestation(challenge, other, public_pem, b64url(secrets.token_bytes(32))),
        "challengeIdentifier": challenge["challengeIdentifier"],
        "credentialName": "bad",
    }
    r = refused(lambda: root.auth.create_credential(body))
    expect((r["status"], r["message"]) == (400, "attestation signature is invalid"), str(r))
    return r


@check
def serviceAccount() -> dict[str, Any]:
    _, private_pem, public_pem = new_key("ed25519")
    sa = root.auth.create_service_account({"name": "py-sa", "publicKey": public_pem, "daysValid": 30})
    token = sa["accessTokens"][0]["accessToken"]
    sa_cred_id = sa["accessTokens"][0]["credId"]
    as_sa = client_for(token, KeySigner(credential_id=sa_cred_id, private_key=private_pem))
    wallet = as_sa.wallets.create_wallet({"network": "Bitcoin"})
    user_id = sa["userInfo"]["userId"]
    got = root.auth.get_service_account(user_id)
    listed = [s["userInfo"]["userId"] for s in root.auth.list_service_accounts()["items"]]
    expect(sa["userInfo"]["isServiceAccount"] is True, "not a service account")
    expect(got["userInfo"]["userId"] == user_id and user_id in listed, "get/list do not show it")
    return {"userId": user_id, "isServiceAccount": True, "walletBySa": wallet["id"], "listed": listed}


@check
def personalAccessToken() -> dict[str, Any]:
    _, private_pem, public_pem = new_key("p256")
    pat = root.auth.create_personal_access_token({"name": "py-pat", "publicKey": public_pem, "secondsValid": 3600})
    as_pat = client_for(pat["accessToken"], KeySigner(credential_id=pat["credId"], private_key=private_pem))
    wallet = as_pat.wallets.create_wallet({"network": "Polygon"})
    listed = [p["tokenId"] for p in root.auth.list_personal_access_tokens()["items"]]
    expect(pat["kind"] == "Pat", f"kind {pat['kind']}")
    expect(pat["tokenId"] in listed, "list_personal_access_tokens does not list it")
    return {"kind": pat["kind"], "walletByPat": wallet["id"]}


# ---- webhooks ----

WEBHOOK_FIELDS = ("id", "url", "events", "status", "description", "dateCreated", "dateUpdated")


@check
def webhook() -> dict[str, Any]:
    created = root.webhooks.create_webhook(
        {"url": "https://example.com/py-hook", "events": ["wallet.created"], "description": "py-sdk"}
    )
    got = root.webhooks.get_webhook(created["id"])
    state["webhook"] = (created, got)
    ping = None if FAULTS else root.webhooks.ping_webhook(created["id"])  # POST, no body: payload ""
    deleted = root.webhooks.delete_webhook(created["id"])  # DELETE, no body: payload ""
    gone = refused(lambda: root.webhooks.get_webhook(created["id"]))
    expect(got["id"] == created["id"], "get_webhook returned another webhook")
    expect(deleted == {"deleted": True}, f"delete_webhook returned {deleted}")
    expect(gone["status"] == 404, f"get_webhook after delete: {gone}")
    return {"webhookId": created["id"], "ping": ping, "deleted": deleted, "afterDelete": gone}


@check
def webhookEntity() -> dict[str, Any]:
    # The fields Dfns documents for a webhook; `secret` only in the answer to its creation.
    created, got = state["webhook"]
    missing = {
        "created": [f for f in WEBHOOK_FIELDS if f not in created],
        "got": [f for f in WEBHOOK_FIELDS if f not in got],
    }
    expect(not missing["created"] and not missing["got"], f"missing fields: {missing}")
    expect(bool(created.get("secret")), "no secret in the answer to create_webhook")
    expect("secret" not in got, "get_webhook shows the secret")
    expect(
        (got["url"], got["events"], got["description"], got["status"])
        == ("https://example.com/py-hook", ["wallet.created"], "py-sdk", "Enabled"),
        f"get_webhook: {got}",
    )
    return {"fields": sorted(got), "status": got["status"], "secretOnCreate": True}


# ---- delegated signing, delegated login, login ----


@check
def delegatedSigning() -> dict[str, Any]:
    # The challenge goes to a signer elsewhere; the signed challenge comes back.
    delegated = DfnsDelegatedClient(DfnsDelegatedClientConfig(auth_token=AUTH_TOKEN, base_url=BASE_URL))
    tap.install(delegated)
    body = {"network": "EthereumSepolia", "name": "delegated"}
    challenge = delegated.wallets.create_wallet_init(body)
    first_factor = root_signer.sign(challenge)
    wallet = delegated.wallets.create_wallet_complete(
        body, {"challengeIdentifier": challenge["challengeIdentifier"], "firstFactor": first_factor}
    )
    expect(wallet["name"] == "delegated", f"name {wallet.get('name')}")
    return {"walletId": wallet["id"], "name": wallet["name"]}


@check
def delegatedLogin() -> dict[str, Any]:
    # POST /auth/login/delegated is itself a user action, signed by the root credential.
    result = root.auth.delegated_login({"username": "py-end-user@example.com"})
    as_end_user = client_for(result["token"], None)
    page = as_end_user.wallets.list_wallets()
    claims = jwt_claims(result["token"])["https://custom/app_metadata"]
    expect(claims["orgId"] == ORG_ID, "the end user's token is for another organisation")
    return {"walletsSeen": len(page["items"]), "sameOrg": True}


@check
def login() -> dict[str, Any]:
    if not USERNAME:
        return {"skipped": "DFNS_USERNAME is not set"}
    # dfns-sdk 1.0.4 has no login helper: init, sign the challenge with the KeySigner, complete.
    # DfnsClientConfig.auth_token is required and always sent (an empty one is refused by h11
    # before anything leaves), so the root token rides along; the login routes do not read it.
    anonymous = client_for(AUTH_TOKEN, None)
    challenge = anonymous.auth.create_login_challenge({"username": USERNAME, "orgId": ORG_ID})
    token = anonymous.auth.login(
        {"challengeIdentifier": challenge["challengeIdentifier"], "firstFactor": root_signer.sign(challenge)}
    )["token"]
    as_user = client_for(token, root_signer)
    page = as_user.wallets.list_wallets()
    same_org = jwt_claims(token)["https://custom/app_metadata"]["orgId"] == ORG_ID
    as_user.auth.logout({})
    after = refused(lambda: as_user.wallets.list_wallets())
    expect(same_org, "the login token is for another organisation")
    expect(after["status"] == 401, f"after logout: {after}")
    return {"walletsSeen": len(page["items"]), "sameOrg": same_org, "afterLogout": after["status"]}


# ---- faults the Rust test configured (DFNS_FAULTS=1) ----


@check
def policyPending() -> dict[str, Any]:
    if not FAULTS:
        return {"skipped": "DFNS_FAULTS is not 1"}
    # dfns-sdk 1.0.4 raises only for a status >= 400: a 202 comes back as if it were the result.
    answer = root.wallets.update_wallet(state["wallet"]["id"], {"name": "renamed"})
    expect(isinstance(answer, dict) and answer.get("status") == "Pending", f"answer {answer}")
    return {"thrown": False, "approvalStatus": answer["status"], "approvalId": answer.get("id")}


@check
def rateLimited() -> dict[str, Any]:
    if not FAULTS:
        return {"skipped": "DFNS_FAULTS is not 1"}
    hook = root.webhooks.create_webhook({"url": "https://example.com/py-hook2", "events": ["*"]})
    r = refused(lambda: root.webhooks.ping_webhook(hook["id"]))  # DfnsError keeps no headers
    expect((r["status"], r["message"]) == (429, "Too Many Requests"), str(r))
    return r


# ---- refusals ----


@check
def replayedUserAction() -> dict[str, Any]:
    root.wallets.create_wallet({"network": "EthereumSepolia", "name": "first"})
    tap.mode = "replay"  # the next signed request carries the previous, spent, user action
    r = refused(lambda: root.wallets.create_wallet({"network": "EthereumSepolia", "name": "first"}))
    expect((r["status"], r["message"]) == (400, "user action has already been used"), str(r))
    return r


@check
def tamperedBody() -> dict[str, Any]:
    tap.mode = "tamper-body"  # the body changes after it was signed
    r = refused(lambda: root.wallets.create_wallet({"network": "EthereumSepolia", "name": "tampered-before"}))
    expect((r["status"], r["message"]) == (403, USER_ACTION_INVALID), str(r))
    return r


@check
def changedPath() -> dict[str, Any]:
    # A user action signed for PUT /wallets/{A}/tags, sent to PUT /wallets/{B}/tags.
    signed_for = state["wallet"]["id"]
    target = root.wallets.create_wallet({"network": "EthereumSepolia", "name": "path-target"})["id"]
    tap.mode = "change-path"
    tap.path_change = (f"/wallets/{signed_for}/tags", f"/wallets/{target}/tags")
    r = refused(lambda: root.wallets.tag_wallet(signed_for, {"tags": ["moved"]}))
    target_tags = root.wallets.get_wallet(target).get("tags", [])
    signed_for_tags = root.wallets.get_wallet(signed_for).get("tags", [])
    expect((r["status"], r["message"]) == (403, USER_ACTION_INVALID), str(r))
    expect("moved" not in target_tags and "moved" not in signed_for_tags, "the tag was applied")
    return {**r, "targetTags": target_tags}


@check
def wrongKeyForCredential() -> dict[str, Any]:
    # The root credential's id, signed by another key.
    _, impostor_pem, _ = new_key("p256")
    impostor = client_for(AUTH_TOKEN, KeySigner(credential_id=CRED_ID, private_key=impostor_pem))
    r = refused(lambda: impostor.wallets.create_wallet({"network": "EthereumSepolia", "name": "impostor"}))
    expect((r["status"], r["message"]) == (401, USER_ACTION_INVALID), str(r))
    return r


@check
def foreignCredential() -> dict[str, Any]:
    # A real credential, correctly signed, but another user's (a service account's), used
    # with the root user's token.
    _, private_pem, public_pem = new_key("p256")
    sa = root.auth.create_service_account({"name": "py-sa-foreign", "publicKey": public_pem, "daysValid": 1})
    foreign_signer = KeySigner(credential_id=sa["accessTokens"][0]["credId"], private_key=private_pem)
    as_root_with_foreign = client_for(AUTH_TOKEN, foreign_signer)
    r = refused(lambda: as_root_with_foreign.wallets.create_wallet({"network": "EthereumSepolia", "name": "foreign"}))
    expect((r["status"], r["message"]) == (401, USER_ACTION_INVALID), str(r))
    return r


@check
def afterRefusals() -> dict[str, Any]:
    names = [w.get("name") for w in root.wallets.list_wallets()["items"]]
    expect(names.count("first") == 1, f"the replay created a wallet: {names}")
    expect(not any((n or "").startswith("tampered") for n in names), f"the tampered request created a wallet: {names}")
    expect("impostor" not in names and "foreign" not in names, f"a refused signer created a wallet: {names}")
    return {"names": names}


def main() -> int:
    results: dict[str, dict[str, Any]] = {}
    passed = failed = 0
    for name, fn in checks:
        if ONLY and name not in ONLY:
            continue
        try:
            facts = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
            detail: dict[str, Any] = {"error": type(e).__name__, "message": str(e)}
            if isinstance(e, DfnsError):
                detail.update(message=e.message, status=e.status_code, details=e.details)
            elif not isinstance(e, AssertionError):
                detail["trace"] = traceback.format_exc(limit=4)
            results[name] = {"ok": False, **detail}
            failed += 1
            print(f"FAIL {name}  {type(e).__name__}: {e}", flush=True)
            continue
        info = facts.pop("_info", False)
        results[name] = {"ok": True, **facts}
        shown = json.dumps({k: v for k, v in facts.items() if k not in ("wire", "listed", "names")}, ensure_ascii=False)
        if info:
            print(f"INFO {name}  {shown[:300]}", flush=True)
        elif "skipped" in facts:
            print(f"SKIP {name}  {facts['skipped']}", flush=True)
        else:
            passed += 1
            print(f"PASS {name}  {shown[:300]}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    summary = {"sdk": SDK_VERSION, "results": results, "passed": passed, "failed": failed, "requests": len(tap.requests)}
    print(json.dumps(summary, ensure_ascii=False), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Drives the official Dfns Python SDK (`dfns-sdk` 1.0.4, pinned in requirements.lock) through a
running `dfns-signer serve`, with the repository's adapter (clients/python, `dfns_signer_remote`,
imported from clients/python/src through PYTHONPATH) as the SDK's signer. tests/py_sdk.rs starts
the simulator and the service, runs this script in the venv made from requirements.lock, and
asserts on its output; the script only records what happened.

The SDK's base_url is the service, and `headers=` puts the client secret on every request, so
the service knows the client already at /auth/action/init.

Environment:
  DFNS_SIGNER_URL            the service's base URL, e.g. http://127.0.0.1:40301
  DFNS_AUTH_TOKEN            the Dfns token of the service account whose key the service holds
  DFNS_SIGNER_CLIENT_SECRET  the secret of the service's client `payments`

Output, on stdout: one JSON line, {"sdk", "adapter", "results": {step: {"ok": bool, ...facts}}}.
Ids, statuses, signatures and error messages only: never the token or the client secret (both
are also cut out of the line before it is printed, in case an error message ever echoed one).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from typing import Any, Callable

# httpx (the SDK's transport) honours HTTP(S)_PROXY and ALL_PROXY and does not exempt loopback by
# itself: the service listens on 127.0.0.1, so it must never go through a proxy.
_no_proxy = [h for h in os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",") if h]
for _host in ("127.0.0.1", "localhost", "::1"):
    if _host not in _no_proxy:
        _no_proxy.append(_host)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(_no_proxy)

import dfns_signer_remote  # noqa: E402
from dfns_sdk import DfnsClient, DfnsClientConfig, DfnsError  # noqa: E402
from dfns_signer_remote import RemoteSigner, RemoteSignerError  # noqa: E402


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        print(f"usage: {name} is not set (see the docstring of {sys.argv[0]})", file=sys.stderr)
        sys.exit(2)
    return value


SERVICE_URL = env("DFNS_SIGNER_URL")
AUTH_TOKEN = env("DFNS_AUTH_TOKEN")
CLIENT_SECRET = env("DFNS_SIGNER_CLIENT_SECRET")
HASH = "0x" + "42" * 32

client = DfnsClient(
    DfnsClientConfig(
        auth_token=AUTH_TOKEN,
        base_url=SERVICE_URL,  # the service, not the Dfns API
        signer=RemoteSigner(SERVICE_URL, CLIENT_SECRET),
        headers={"X-Dfns-Signer-Client": CLIENT_SECRET},
    )
)

results: dict[str, dict[str, Any]] = {}


def step(name: str, fn: Callable[[], dict[str, Any]]) -> None:
    try:
        results[name] = {"ok": True, **fn()}
    except Exception as e:  # noqa: BLE001 (every failure is a fact to record)
        fact: dict[str, Any] = {"ok": False, "errorName": type(e).__name__, "text": str(e)}
        if isinstance(e, DfnsError):
            fact.update(
                dfnsError=True,
                status=e.status_code,
                message=e.message,
                errorCode=e.error_code,
                details=e.details,
            )
        elif isinstance(e, RemoteSignerError):
            fact.update(remoteSignerError=True, status=e.status, message=e.message, fix=e.fix, rule=e.rule)
        results[name] = fact


wallet: dict[str, Any] = {}


def create_wallet() -> dict[str, Any]:
    wallet.update(client.wallets.create_wallet({"network": "Bitcoin"}))
    return {"walletId": wallet["id"], "network": wallet["network"], "signingKey": wallet.get("signingKey")}


def generate_signature() -> dict[str, Any]:
    if "id" not in wallet:
        raise RuntimeError("no wallet: createWallet failed")
    # dfns-sdk 1.0.4 has no wallets.generate_signature (only keys.generate_signature, which the
    # `payments` policy does not allow): the SDK's own request method, with the user action
    # flow its generated methods use (requires_signature=True), sends POST
    # /wallets/{walletId}/signatures.
    sig = client._http.request(
        method="POST",
        path="/wallets/{walletId}/signatures",
        path_params={"walletId": wallet["id"]},
        body={"kind": "Hash", "hash": HASH},
        requires_signature=True,
    )
    return {
        "signatureId": sig.get("id"),
        "walletId": sig.get("walletId"),
        "status": sig.get("status"),
        "hash": HASH,
        "signature": sig.get("signature"),
    }


def tron_wallet() -> dict[str, Any]:
    # Outside the `payments` policy (Bitcoin and EthereumSepolia only). The client is named at
    # init, so the service refuses the init itself; the SDK raises its DfnsError.
    refused = client.wallets.create_wallet({"network": "Tron"})
    return {"walletId": refused.get("id"), "network": refused.get("network")}


step("createWallet", create_wallet)
step("generateSignature", generate_signature)
step("tronWallet", tron_wallet)

line = json.dumps(
    {
        "sdk": importlib.metadata.version("dfns-sdk"),
        "adapter": os.path.realpath(dfns_signer_remote.__file__),
        "results": results,
    }
)
print(line.replace(AUTH_TOKEN, "[redacted]").replace(CLIENT_SECRET, "[redacted]"))

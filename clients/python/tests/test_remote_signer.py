"""Unit tests for dfns_signer_remote.RemoteSigner against a local fake of the dfns-signer
service's POST /v1/sign (http.server on an ephemeral port, in a thread).

Run: python3 -m unittest discover -s clients/python/tests
The package is imported from ../src when it is not installed. The last tests drive the real
dfns-sdk through the fake when it is importable, and are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import unittest
from unittest import mock
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import dfns_signer_remote  # noqa: F401  (installed with pip)
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from dfns_signer_remote import RemoteSigner, RemoteSignerError  # noqa: E402

try:
    import dfns_sdk
except ImportError:
    dfns_sdk = None

SECRET = "cs_test_9f8e7d6c5b4a-very-secret"

CHALLENGE = {
    "supportedCredentialKinds": [{"kind": "Key", "factor": "first", "requiresSecondFactor": False}],
    "challenge": "Y2hhbGxlbmdl",
    "challengeIdentifier": "cid-123",
    "externalAuthenticationUrl": "",
    "allowCredentials": {"key": [{"type": "public-key", "id": "cred-1"}], "webauthn": []},
    "userVerification": "required",
    "dfnsSignerApproval": "approval-token",
}

# Extra fields on purpose: the adapter must hand back firstFactor untouched.
FIRST_FACTOR = {
    "kind": "Key",
    "credentialAssertion": {
        "credId": "cred-1",
        "clientData": "eyJ0eXBlIjoia2V5LmdldCJ9",
        "signature": "c2ln",
        "algorithm": "ES256",
    },
    "extra": {"kept": True},
}


class FakeService:
    """A local HTTP server; `answer(path, headers, body)` returns (status, content_type, bytes)
    with an optional fourth item of extra headers, or None to hang until the test ends. Every request is recorded in `requests`."""

    def __init__(self, answer):
        self.requests = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
                reply = answer(self.path, self.headers, body)
                if reply is None:
                    fake.release.wait(10)
                    return
                status, ctype, data, extra = (reply + ({},))[:4]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # a followed 302 would arrive as a GET: record it too

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def json_reply(status, value):
    return status, "application/json", json.dumps(value).encode()


class RemoteSignerTest(unittest.TestCase):
    def serve(self, answer):
        svc = FakeService(answer)
        self.addCleanup(svc.close)
        return svc

    def assert_no_secret(self, err):
        for text in (str(err), repr(err), err.message, err.fix, err.rule, repr(err.args)):
            self.assertNotIn(SECRET, str(text))

    def test_posts_whole_challenge_with_secret_header_and_returns_first_factor_verbatim(self):
        svc = self.serve(lambda p, h, b: json_reply(200, {"firstFactor": FIRST_FACTOR}))
        signer = RemoteSigner(svc.url + "/", SECRET)  # a trailing slash is fine

        got = signer.sign(CHALLENGE)

        self.assertEqual(got, FIRST_FACTOR)
        self.assertEqual(len(svc.requests), 1)
        r = svc.requests[0]
        self.assertEqual(r["path"], "/v1/sign")
        self.assertEqual(r["headers"]["Content-Type"], "application/json")
        self.assertEqual(r["headers"]["X-Dfns-Signer-Client"], SECRET)
        self.assertEqual(json.loads(r["body"]), {"challenge": CHALLENGE})  # no "key" when none given

    def test_sends_key_when_configured(self):
        svc = self.serve(lambda p, h, b: json_reply(200, {"firstFactor": FIRST_FACTOR}))

        RemoteSigner(svc.url, SECRET, key="treasury").sign(CHALLENGE)

        self.assertEqual(json.loads(svc.requests[0]["body"]), {"challenge": CHALLENGE, "key": "treasury"})

    def test_403_json_error_has_status_message_fix_rule_and_no_secret(self):
        svc = self.serve(lambda p, h, b: json_reply(403, {"error": {
            "message": "policy refused this action", "fix": "ask an admin to allow wallets", "rule": "no-wallets"}}))

        with self.assertRaises(RemoteSignerError) as cm:
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

        e = cm.exception
        self.assertEqual((e.status, e.message, e.fix, e.rule),
                         (403, "policy refused this action", "ask an admin to allow wallets", "no-wallets"))
        for part in ("403", "policy refused this action", "ask an admin to allow wallets", "no-wallets"):
            self.assertIn(part, str(e))
        self.assert_no_secret(e)

    def test_error_echoing_the_secret_is_redacted(self):
        svc = self.serve(lambda p, h, b: json_reply(403, {"error": {
            "message": "unknown client " + h["X-Dfns-Signer-Client"], "fix": "check the secret"}}))

        with self.assertRaises(RemoteSignerError) as cm:
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

        self.assertIn("unknown client [redacted]", str(cm.exception))
        self.assert_no_secret(cm.exception)

    def test_502_non_json_body_has_status_and_body_start_and_no_secret(self):
        svc = self.serve(lambda p, h, b: (502, "text/html", b"<html><body>502 Bad Gateway</body></html>"))

        with self.assertRaises(RemoteSignerError) as cm:
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

        e = cm.exception
        self.assertEqual(e.status, 502)
        self.assertIn("HTTP 502", str(e))
        self.assertIn("502 Bad Gateway", str(e))
        self.assertIsNone(e.fix)
        self.assert_no_secret(e)

    def test_200_without_first_factor_is_an_error(self):
        svc = self.serve(lambda p, h, b: json_reply(200, {"something": "else"}))

        with self.assertRaisesRegex(RemoteSignerError, "without a firstFactor"):
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

    def test_refuses_locally_without_approval(self):
        svc = self.serve(lambda p, h, b: json_reply(200, {"firstFactor": FIRST_FACTOR}))
        straight_from_dfns = {k: v for k, v in CHALLENGE.items() if k != "dfnsSignerApproval"}

        with self.assertRaises(RemoteSignerError) as cm:
            RemoteSigner(svc.url, SECRET).sign(straight_from_dfns)

        self.assertIsNone(cm.exception.status)
        self.assertIn("this challenge did not come through the dfns-signer service: "
                      "point the SDK's base_url at the service", str(cm.exception))
        self.assertEqual(svc.requests, [])

    def test_timeout(self):
        svc = self.serve(lambda p, h, b: None)  # never answers
        signer = RemoteSigner(svc.url, SECRET, timeout=0.3)

        started = time.monotonic()
        with self.assertRaisesRegex(RemoteSignerError, "did not answer within 0.3 s") as cm:
            signer.sign(CHALLENGE)

        self.assertLess(time.monotonic() - started, 5)
        self.assertIsNone(cm.exception.status)
        self.assert_no_secret(cm.exception)

    def test_unreachable_service(self):
        svc = FakeService(lambda p, h, b: None)
        svc.close()  # nothing listens on that port any more

        with self.assertRaisesRegex(RemoteSignerError, "could not reach the dfns-signer service") as cm:
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

        self.assert_no_secret(cm.exception)

    def test_redirect_is_not_followed(self):
        # Following it would hand the X-Dfns-Signer-Client header to whoever the Location names.
        elsewhere = self.serve(lambda p, h, b: json_reply(200, {"firstFactor": FIRST_FACTOR}))
        svc = self.serve(lambda p, h, b: (302, "text/plain", b"", {"Location": elsewhere.url + "/v1/sign"}))

        with self.assertRaises(RemoteSignerError) as cm:
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

        self.assertEqual(cm.exception.status, 302)
        self.assertEqual(elsewhere.requests, [])

    def test_proxy_environment_is_ignored(self):
        # An HTTP_PROXY from the environment must not see the request (and its secret header).
        proxy = self.serve(lambda p, h, b: json_reply(200, {"firstFactor": FIRST_FACTOR}))
        svc = self.serve(lambda p, h, b: json_reply(200, {"firstFactor": FIRST_FACTOR}))

        with mock.patch.dict(os.environ, {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}):
            RemoteSigner(svc.url, SECRET).sign(CHALLENGE)

        self.assertEqual(proxy.requests, [])
        self.assertEqual(len(svc.requests), 1)

    def test_secret_not_in_repr_or_str(self):
        signer = RemoteSigner("http://127.0.0.1:8470", SECRET, key="k1")

        for text in (repr(signer), str(signer), f"{signer}", f"{signer!r}", "%s" % (signer,)):
            self.assertNotIn(SECRET, text)
        self.assertIn("client_secret='[redacted]'", repr(signer))

    def test_constructor_checks(self):
        with self.assertRaisesRegex(ValueError, "url is required"):
            RemoteSigner("", SECRET)
        with self.assertRaisesRegex(ValueError, "client_secret is required"):
            RemoteSigner("http://127.0.0.1:8470", "")
        with self.assertRaisesRegex(ValueError, "timeout"):
            RemoteSigner("http://127.0.0.1:8470", SECRET, timeout=0)


@unittest.skipIf(dfns_sdk is None, "dfns-sdk not installed")
class WithDfnsSdkTest(unittest.TestCase):
    """DfnsClient pointed at a fake of the whole service: init passes through (here: answered)
    with the approval added, /v1/sign signs, /auth/action and /wallets answer like Dfns."""

    def client(self, sign_reply):
        def answer(path, headers, body):
            if path == "/auth/action/init":
                return json_reply(200, CHALLENGE)
            if path == "/v1/sign":
                return sign_reply
            if path == "/auth/action":
                return json_reply(200, {"userAction": "ua-token"})
            if path == "/wallets":
                return json_reply(200, {"id": "wa-1", "network": "EthereumSepolia"})
            return json_reply(404, {"error": {"message": "not found"}})

        svc = FakeService(answer)
        self.addCleanup(svc.close)
        client = dfns_sdk.DfnsClient(dfns_sdk.DfnsClientConfig(
            auth_token="test-token",
            base_url=svc.url,
            signer=RemoteSigner(svc.url, SECRET),
            headers={"X-Dfns-Signer-Client": SECRET},
        ))
        return svc, client

    def test_create_wallet_through_the_service(self):
        svc, client = self.client(json_reply(200, {"firstFactor": FIRST_FACTOR}))

        wallet = client.wallets.create_wallet({"network": "EthereumSepolia"})

        self.assertEqual(wallet["id"], "wa-1")
        self.assertEqual([r["path"] for r in svc.requests],
                         ["/auth/action/init", "/v1/sign", "/auth/action", "/wallets"])
        # headers= puts the client secret on init already, so the service knows the client there.
        self.assertEqual(svc.requests[0]["headers"]["X-Dfns-Signer-Client"], SECRET)
        self.assertEqual(json.loads(svc.requests[1]["body"]), {"challenge": CHALLENGE})
        self.assertEqual(json.loads(svc.requests[2]["body"]),
                         {"challengeIdentifier": "cid-123", "firstFactor": FIRST_FACTOR})

    def test_refusal_reaches_the_caller(self):
        svc, client = self.client(json_reply(403, {"error": {"message": "policy refused this action"}}))

        with self.assertRaisesRegex(RemoteSignerError, "HTTP 403.*policy refused this action"):
            client.wallets.create_wallet({"network": "EthereumSepolia"})
        self.assertEqual([r["path"] for r in svc.requests], ["/auth/action/init", "/v1/sign"])


if __name__ == "__main__":
    unittest.main()

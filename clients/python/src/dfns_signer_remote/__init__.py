"""dfns_signer_remote: a Signer for the Dfns Python SDK (dfns-sdk) that holds no key.

The SDK is pointed at a running ``dfns-signer serve`` (its base_url); the service passes
``POST /auth/action/init`` on to Dfns and adds its approval to the challenge, and
``RemoteSigner.sign`` asks the service (``POST {url}/v1/sign``) to sign that challenge with the
hardware credential it holds. Standard library only (urllib.request), Python >= 3.9.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from typing import Any, Dict, Mapping, Optional, TypedDict, cast

__all__ = ["RemoteSigner", "RemoteSignerError", "CredentialAssertion"]
__version__ = "0.1.0"


class CredentialAssertion(TypedDict):
    """Same shape as dfns_sdk.auth.CredentialAssertion (TypedDicts match structurally, so type
    checkers accept RemoteSigner wherever the SDK wants a Signer, without importing the SDK)."""

    kind: str
    credentialAssertion: Dict[str, str]


_NOT_THROUGH_SERVICE = (
    "this challenge did not come through the dfns-signer service: "
    "point the SDK's base_url at the service"
)


class RemoteSignerError(Exception):
    """Every failure of RemoteSigner.sign.

    ``status`` is the HTTP status of a refusal (a non-200 answer), else None (local refusal,
    unreachable service, timeout, 200 without firstFactor). ``message``, ``fix`` and ``rule``
    are the service's ``{"error": {...}}`` fields when it sent them (when there is no refusal,
    ``message`` describes the failure). ``str(error)`` puts them all in one line.
    """

    def __init__(
        self,
        status: Optional[int],
        message: Optional[str],
        fix: Optional[str] = None,
        rule: Optional[str] = None,
    ) -> None:
        self.status = status
        self.message = message
        self.fix = fix
        self.rule = rule
        if status is None:
            text = message or "dfns-signer remote signing failed"
        else:
            text = f"dfns-signer service refused to sign (HTTP {status})"
            if message:
                text += f": {message}"
        if fix:
            text += f"; fix: {fix}"
        if rule:
            text += f" [rule: {rule}]"
        # Only the composed text goes to Exception, so str() and repr() show just that.
        super().__init__(text)


_NOT_JSON = object()  # marks a body that did not parse as JSON


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A followed redirect would carry the X-Dfns-Signer-Client header to another URL; returning
    # None makes urllib raise HTTPError with the 3xx status instead.
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    # ProxyHandler({}): no proxy from the environment either, so HTTP(S)_PROXY never sees the
    # client secret on its way to a service that is normally on loopback.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class RemoteSigner:
    """dfns_sdk.auth.Signer that signs through a dfns-signer service.

    Args:
        url: base URL of the service, e.g. ``http://127.0.0.1:8470`` (also the SDK's base_url).
        client_secret: identifies this client to the service (sent as X-Dfns-Signer-Client);
            never logged and never shown by repr() or in errors.
        key: name of the service key to sign with; not sent when None.
        timeout: seconds to wait for the service (per connect/read). Default 30.
    """

    def __init__(
        self,
        url: str,
        client_secret: str,
        key: Optional[str] = None,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError("RemoteSigner: url is required")
        if not isinstance(client_secret, str) or not client_secret:
            raise ValueError("RemoteSigner: client_secret is required")
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError("RemoteSigner: key must be a non-empty string when given")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError("RemoteSigner: timeout must be a positive number of seconds")
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = float(timeout)
        self.__client_secret = client_secret  # name-mangled, and left out of __repr__

    def __repr__(self) -> str:
        return (
            f"RemoteSigner(url={self.url!r}, key={self.key!r}, "
            f"timeout={self.timeout!r}, client_secret='[redacted]')"
        )

    def sign(self, challenge: Mapping[str, Any]) -> CredentialAssertion:
        """Sign a user-action challenge through the service.

        Sends the whole challenge to ``POST {url}/v1/sign`` and returns the service's
        ``firstFactor`` unchanged (the SDK's CredentialAssertion). Raises RemoteSignerError;
        a challenge without ``dfnsSignerApproval`` is refused before any network call.
        """
        # Without the service's approval the challenge came straight from Dfns; the service
        # would refuse it anyway, so say what is wrong without a round trip.
        approval = challenge.get("dfnsSignerApproval") if isinstance(challenge, Mapping) else None
        if not isinstance(approval, str) or not approval:
            raise RemoteSignerError(None, _NOT_THROUGH_SERVICE)

        body: Dict[str, Any] = {"challenge": dict(challenge)}
        if self.key is not None:
            body["key"] = self.key
        request = urllib.request.Request(
            f"{self.url}/v1/sign",
            data=json.dumps(body).encode("utf-8"),
            headers={
                "Content-Type": "application/json",
                "X-Dfns-Signer-Client": self.__client_secret,
            },
            method="POST",
        )
        try:
            with _opener().open(request, timeout=self.timeout) as response:
                status, text = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:  # any non-2xx answer (and 3xx, see _NoRedirect)
            try:
                status, text = e.code, e.read().decode("utf-8", "replace")
            except (OSError, socket.timeout):
                status, text = e.code, ""
            finally:
                e.close()
        except (socket.timeout, TimeoutError):  # while reading the answer
            raise self._timeout() from None
        except urllib.error.URLError as e:
            # A connect timeout arrives wrapped: URLError(reason=socket.timeout(...)).
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise self._timeout() from None
            raise self._unreachable(e.reason) from None
        except (OSError, http.client.HTTPException) as e:  # e.g. reset or cut short while reading
            raise self._unreachable(e) from None

        try:
            answer: Any = json.loads(text)
        except ValueError:
            answer = _NOT_JSON

        if status == 200:
            first_factor = answer.get("firstFactor") if isinstance(answer, dict) else None
            if not isinstance(first_factor, dict):
                raise self._error(
                    None, f"the dfns-signer service at {self.url} answered 200 without a firstFactor"
                )
            return cast(CredentialAssertion, first_factor)

        # {"error": {"message", "fix", "rule"}}: any of it may be missing, and a proxy in between
        # may answer with a non-JSON body (e.g. a 502 page).
        err = answer.get("error") if isinstance(answer, dict) else None
        err = err if isinstance(err, dict) else {}
        message, fix, rule = (_str_or_none(err.get(k)) for k in ("message", "fix", "rule"))
        if message is None and answer is _NOT_JSON:
            message = f"non-JSON answer: {_snippet(text)}"
        raise self._error(status, message, fix, rule)

    def _timeout(self) -> RemoteSignerError:
        return self._error(
            None, f"the dfns-signer service at {self.url} did not answer within {self.timeout:g} s"
        )

    def _unreachable(self, why: Any) -> RemoteSignerError:
        return self._error(None, f"could not reach the dfns-signer service at {self.url}: {why}")

    def _error(
        self,
        status: Optional[int],
        message: Optional[str],
        fix: Optional[str] = None,
        rule: Optional[str] = None,
    ) -> RemoteSignerError:
        # Every error goes through here: whatever the service or a proxy echoed, the client
        # secret is cut out before the text can reach a log or a traceback.
        def redact(s: Optional[str]) -> Optional[str]:
            return s.replace(self.__client_secret, "[redacted]") if s else s

        return RemoteSignerError(status, redact(message), redact(fix), redact(rule))


def _str_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _snippet(text: str) -> str:
    """First 200 characters of a body, on one line, for an error message."""
    one = " ".join(text.split())
    if not one:
        return "(empty body)"
    return one[:200] + "…" if len(one) > 200 else one

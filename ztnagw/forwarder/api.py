# -*- test-case-name: tests.forwarder.test_enroll -*-
"""
The forwarder's side of the EMS JSON API: one request, one JSON answer.

Enrollment and telemetry are small JSON exchanges over TLS with the EMS
listener (C{docs/ems.md}, "The EMS API").  L{postJson} sends one, through
ztnagw's own HTTP client (L{ztnagw.http.pool.UpstreamPool}), with the
headers every forwarder request carries (C{User-Agent:
ztnagw-forward/<version>}, C{Accept: application/json}), reads the answer
with a size limit and turns it into an L{ApiAnswer}, or an L{EmsError}
carrying the EMS's stable error code.  How the server is authenticated is
the caller's choice: the TLS creator it passes (a pin, a CA file, or the
device profile).
"""

from __future__ import annotations

import json
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.forwarder import USER_AGENT
from ztnagw.http.errors import UpstreamError
from ztnagw.http.interfaces import IBodyConsumer
from ztnagw.http.pool import BytesBody, PoolSettings, UpstreamKey, UpstreamPool

__all__ = ["ApiAnswer", "EmsError", "MAX_ANSWER", "postJson"]

#: The largest answer body read (a certificate chain and a CA fit in a few
#: kilobytes).
MAX_ANSWER = 256 * 1024

#: Timeouts for EMS requests: generous, the EMS batches telemetry writes.
API_SETTINGS = PoolSettings(connectTimeout=15.0, responseTimeout=30.0, maxIdlePerKey=1)


class EmsError(Exception):
    """
    The EMS could not be reached, or refused a request.

    @ivar code: the EMS's stable error code (C{token-invalid},
        C{device-refused}...; see C{docs/ems.md}), or C{unreachable} /
        C{bad-answer} for failures on the way.
    @ivar message: what the EMS (or the failure) said.
    @ivar status: the HTTP status, if an answer came.
    @ivar ztnaCode: the ZTNA error code (C{"063"}) when the EMS refused the
        device itself.
    @ivar retryAfter: seconds to wait before trying again, when the EMS
        said.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        ztnaCode: str | None = None,
        retryAfter: float | None = None,
    ) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.status = status
        self.ztnaCode = ztnaCode
        self.retryAfter = retryAfter


@frozen
class ApiAnswer:
    """
    A successful answer.

    @ivar status: the HTTP status (2xx).
    @ivar body: the JSON object answered.
    """

    status: int
    body: dict[str, Any]


@implementer(IBodyConsumer)
class _Collect:
    """
    Collect an answer body up to L{MAX_ANSWER} bytes.
    """

    def __init__(self, done: Deferred[bytes]) -> None:
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0
        self._producer: Any = None

    def bodyStarted(self, producer: Any) -> None:
        """
        @see: L{IBodyConsumer.bodyStarted}
        """
        self._producer = producer

    def bodyDataReceived(self, data: bytes) -> None:
        """
        @see: L{IBodyConsumer.bodyDataReceived}
        """
        if self._done.called:
            return
        self._size += len(data)
        if self._size > MAX_ANSWER:
            self._producer.stopProducing()
            self._done.errback(
                Failure(EmsError("bad-answer", f"the answer is larger than {MAX_ANSWER} bytes"))
            )
            return
        self._parts.append(data)

    def bodyFinished(self) -> None:
        """
        @see: L{IBodyConsumer.bodyFinished}
        """
        if not self._done.called:
            self._done.callback(b"".join(self._parts))

    def bodyFailed(self, reason: Failure) -> None:
        """
        @see: L{IBodyConsumer.bodyFailed}
        """
        if not self._done.called:
            self._done.errback(
                Failure(EmsError("unreachable", f"the answer was cut short: {reason.getErrorMessage()}"))
            )


def _retryAfter(headers: Any) -> float | None:
    value = headers.get(b"retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        seconds = float(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return seconds if 0 <= seconds <= 86400 else None


def _interpret(status: int, headers: Any, data: bytes) -> ApiAnswer:
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EmsError(
            "bad-answer",
            f"the EMS answered HTTP {status} with something that is not JSON "
            "(is this URL an ztnagw EMS?)",
            status,
        ) from None
    if not isinstance(body, dict):
        raise EmsError("bad-answer", "the EMS answered JSON that is not an object", status)
    if 200 <= status < 300:
        return ApiAnswer(status, body)
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        raise EmsError("bad-answer", f"the EMS answered HTTP {status} without an error", status)
    message = error.get("message")
    ztnaCode = error.get("ztnaCode")
    raise EmsError(
        error["code"],
        message if isinstance(message, str) else f"HTTP {status}",
        status,
        ztnaCode if isinstance(ztnaCode, str) else None,
        _retryAfter(headers),
    )


def postJson(
    reactor: Any,
    host: str,
    port: int,
    creator: IOpenSSLClientConnectionCreator,
    path: bytes,
    payload: dict[str, Any],
    pool: UpstreamPool | None = None,
) -> Deferred[ApiAnswer]:
    """
    POST C{payload} as JSON to C{https://host:port/path} and read the JSON
    answer.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @param creator: the TLS client side: how the EMS is authenticated and
        which certificate (if any) the device presents.
    @param pool: the connection pool to use (the agent keeps one to reuse
        its connection); a new one, closed afterwards, by default.
    @return: fires with the L{ApiAnswer} of a 2xx answer, or fails with an
        L{EmsError}: the EMS's own error (its code, message and ZTNA code),
        C{unreachable} (connection, TLS or timeout: the message says which,
        for example that the server's key is not the pinned one) or
        C{bad-answer}.
    """
    ownPool = pool is None
    if pool is None:
        pool = UpstreamPool(reactor, API_SETTINGS)
    hostField = host if ":" not in host else f"[{host}]"
    if port != 443:
        hostField = f"{hostField}:{port}"
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [
        (b"Host", hostField.encode("idna")),
        (b"User-Agent", USER_AGENT.encode("ascii")),
        (b"Accept", b"application/json"),
        (b"Content-Type", b"application/json"),
    ]
    requested = pool.request(
        UpstreamKey(host=host, port=port, tls=creator), b"POST", path, headers, BytesBody(body)
    )

    def received(response: Any) -> Deferred[ApiAnswer]:
        done: Deferred[bytes] = Deferred()
        response.deliverBody(_Collect(done))
        return done.addCallback(lambda data: _interpret(response.status, response.headers, data))

    def failed(reason: Failure) -> Failure:
        if reason.check(UpstreamError):
            return Failure(
                EmsError("unreachable", f"cannot reach the EMS at {host}:{port}: {reason.getErrorMessage()}")
            )
        return reason

    d = requested.addCallbacks(received, failed)
    if ownPool:

        def close(result: object) -> object:
            # After this turn: the connection becomes idle only once the
            # answer is wholly read, which is when this runs.
            reactor.callLater(0, pool.closeIdle)  # type: ignore[union-attr]
            return result

        d.addBoth(close)
    return d

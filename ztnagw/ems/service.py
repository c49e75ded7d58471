# -*- test-case-name: tests.ems.test_service -*-
"""
The EMS listener: enrollment and telemetry over HTTPS, one per enabled
C{fctems} entry, on its C{server}:C{https-port}.

L{EmsApi} answers the two requests of C{docs/ems.md}, "The EMS API":

  - C{POST /api/v1/enroll}: no client certificate needed (a device that has
    one presents it to re-enroll); the enrollment runs in a thread
    (L{ztnagw.ems.enrollment.Enroller}), guarded by L{AttemptLimiter};
  - C{POST /api/v1/telemetry}: the device certificate is required, and
    judged like at any VIP by the shared
    L{ztnagw.tls.server.DeviceCertificateVerifier}; reports go to the
    registry in batches (L{ztnagw.ems.telemetry.TelemetryWriter}).

Answers are JSON; refusals carry a stable C{error.code}
(L{ztnagw.ems.api.ApiError}).  Request bodies are bounded by the HTTP
layer (L{ztnagw.ems.api.MAX_BODY}) and parsed strictly.

L{EmsService} owns the listener, the EMS's own connection to its registry
(opened in a thread: SQLite never runs in the reactor thread), the
telemetry writer and the L{ztnagw.ems.telemetry.PresenceMonitor} that logs
devices going offline and coming back.
"""

from __future__ import annotations

import ipaddress
import weakref
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.device import VerdictKind
from ztnagw.ems.api import (
    MAX_BODY,
    ApiError,
    JsonErrorPages,
    errorBody,
    jsonBody,
    parseDeviceReport,
    parseJsonObject,
)
from ztnagw.ems.ca import EmsCertificateAuthority
from ztnagw.ems.enrollment import (
    AttemptLimiter,
    Enrolled,
    Enroller,
    Proof,
    parseEnrollmentRequest,
)
from ztnagw.ems.keys import certificatePem
from ztnagw.ems.listener import ListenerCertificate
from ztnagw.ems.telemetry import (
    PresenceMonitor,
    Report,
    TelemetryWriter,
    telemetryInterval,
)
from ztnagw.ems.tokens import TokenRefused
from ztnagw.http.interfaces import IBodyConsumer, IRequestHandler
from ztnagw.http.limits import ServerLimits
from ztnagw.http.server import HTTPServerFactory, Request
from ztnagw.logs.entries import DEVICE_ENROLLED, ENROLLMENT_REFUSED, EventLog
from ztnagw.registry.interfaces import IEndpointIndex, IEndpointStore, RegistryUnavailable
from ztnagw.tls.server import (
    DeviceCertificateVerifier,
    HandshakeIncomplete,
    NotVerifiedHere,
    ServerCertificate,
    ServerConnectionCreator,
    presentedCertificate,
)

__all__ = ["ENROLL_PATH", "TELEMETRY_PATH", "EmsApi", "EmsService", "gatewayAddresses"]

ENROLL_PATH = b"/api/v1/enroll"
TELEMETRY_PATH = b"/api/v1/telemetry"

#: Statuses of token refusals: an unknown token is "who are you?", a known
#: one that no longer works is "you may not".
_TOKEN_STATUS = {"token-invalid": 401}

#: Verdicts whose devices may report telemetry (an offline device reports
#: to come back; a quarantined one stays managed).  UNKNOWN and
#: SERIAL_MISMATCH are judged by the index, which may be a moment behind a
#: device that just enrolled or re-enrolled: such reports go on to the
#: registry transaction, which has the last word (066, 001, 063).
_MAY_REPORT = (
    VerdictKind.VALID,
    VerdictKind.OFFLINE,
    VerdictKind.QUARANTINED,
    VerdictKind.UNKNOWN,
    VerdictKind.SERIAL_MISMATCH,
)

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}

_log = Logger()


@implementer(IBodyConsumer)
class _Body:
    """
    Collect a request body, which the HTTP layer already bounds.
    """

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self._parts: list[bytes] = []

    def bodyStarted(self, producer: Any) -> None:
        """
        @see: L{IBodyConsumer.bodyStarted}
        """

    def bodyDataReceived(self, data: bytes) -> None:
        """
        @see: L{IBodyConsumer.bodyDataReceived}
        """
        self._parts.append(data)

    def bodyFinished(self) -> None:
        """
        @see: L{IBodyConsumer.bodyFinished}
        """
        self.done.callback(b"".join(self._parts))

    def bodyFailed(self, reason: Failure) -> None:
        """
        @see: L{IBodyConsumer.bodyFailed}
        """
        self.done.errback(reason)


def gatewayAddresses(config: Any) -> tuple[str, ...]:
    """
    The C{HOST:PORT} of every enabled VIP that an access proxy serves, told
    to enrolling devices as the gateways they may use (the first is the
    forwarder's default).  VIPs on 0.0.0.0 are left out: they name no
    address a device could use.
    """
    found = []
    for name, vip in config.vips.items():
        if not getattr(vip, "status", True) or vip.extip is None or vip.extport is None:
            continue
        if int(vip.extip) == 0 or config.accessProxyOf(name) is None:
            continue
        found.append(f"{vip.extip}:{vip.extport}")
    return tuple(found)


def _peerAddress(request: Request) -> str | None:
    peer = request.connection.peer
    host = getattr(peer, "host", None)
    if not isinstance(host, str):
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


@implementer(IRequestHandler)
class EmsApi:
    """
    The EMS API of one C{fctems} entry.

    @ivar limiter: counts failed enrollment attempts per source.
    """

    def __init__(
        self,
        reactor: Any,
        emsId: int,
        emsSerial: str,
        tenantId: str,
        ca: EmsCertificateAuthority,
        enroller: Enroller,
        writer: TelemetryWriter,
        verifier: DeviceCertificateVerifier,
        store: Callable[[], Deferred[IEndpointStore]],
        onNet: Callable[[str | None], bool],
        outOfSyncThreshold: float,
        logEvent: Callable[[EventLog], None],
        gateways: tuple[str, ...] = (),
        threadpool: Any = None,
        limiter: AttemptLimiter | None = None,
        listenerPin: str | None = None,
        index: IEndpointIndex | None = None,
        indexWait: float = 2.0,
    ) -> None:
        """
        @param reactor: the reactor (time, threads).
        @param emsId: the C{fctems} id.
        @param emsSerial: its serial number.
        @param tenantId: its tenant id.
        @param ca: its CA (its certificates go to enrolled devices).
        @param enroller: enrolls devices.
        @param writer: records telemetry.
        @param verifier: judges presented device certificates.
        @param store: fires with the open registry store.
        @param onNet: whether a source address is on-net.
        @param outOfSyncThreshold: C{out-of-sync-threshold}.
        @param logEvent: writes an event log entry.
        @param gateways: C{HOST:PORT} of the access-proxy VIPs, told to
            enrolled devices.
        @param threadpool: where enrollments run.
        @param limiter: the failed-attempt limiter.
        @param listenerPin: the listener key's pin, told to devices that
            enroll with the CA file, so that a later CA rotation does not
            cut their telemetry (the key outlives rotations).
        @param index: the EMS's registry index in this process: an
            enrollment is answered once the index holds the new record (at
            most C{indexWait} seconds later), so that a device that enrolls
            and at once connects to a VIP of this gateway is known there.
        @param indexWait: see C{index}.
        """
        self._reactor = reactor
        self._emsId = emsId
        self._emsSerial = emsSerial
        self._tenantId = tenantId
        self._ca = ca
        self._enroller = enroller
        self._writer = writer
        self._verifier = verifier
        self._store = store
        self._onNet = onNet
        self._threshold = outOfSyncThreshold
        self._logEvent = logEvent
        self._gateways = gateways
        self._threadpool = threadpool
        self.limiter = limiter if limiter is not None else AttemptLimiter(reactor.seconds)
        self._listenerPin = listenerPin
        self._index = index
        self._indexWait = indexWait

    # IRequestHandler

    def requestReceived(self, request: Request) -> None:
        """
        Route a request; answer everything with JSON.
        """
        if request.path == ENROLL_PATH:
            handle: Callable[[Request, dict[str, Any]], Deferred[dict[str, Any]]] = self._enroll
        elif request.path == TELEMETRY_PATH:
            handle = self._telemetry
        else:
            self._refuse(request, ApiError(404, "not-found", "no such API; see docs/ems.md"))
            return
        if request.method != b"POST":
            self._refuse(request, ApiError(405, "method-not-allowed", "use POST"), [(b"Allow", b"POST")])
            return
        contentType = (request.headers.get(b"content-type") or b"").split(b";")[0].strip().lower()
        if contentType != b"application/json":
            self._refuse(
                request, ApiError(415, "unsupported-media-type", "send the request as application/json")
            )
            return
        if handle == self._enroll:
            wait = self.limiter.retryAfter(_peerAddress(request))
            if wait is not None:
                self._refuse(
                    request,
                    ApiError(
                        429,
                        "too-many-attempts",
                        "too many failed enrollment attempts from this address; try later",
                        retryAfter=int(wait) + 1,
                    ),
                )
                return
        body = _Body()
        request.deliverBody(body)
        d = body.done.addCallback(parseJsonObject)
        d.addCallback(lambda value: handle(request, value))
        d.addCallbacks(lambda answer: self._answer(request, 200, answer), lambda f: self._failed(request, f))

    # Answers

    def _answer(self, request: Request, status: int, body: dict[str, Any]) -> None:
        request.response.respond(
            status,
            _REASONS[status],
            [(b"Content-Type", b"application/json"), (b"Cache-Control", b"no-store")],
            jsonBody(body),
        )

    def _refuse(self, request: Request, error: ApiError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"Content-Type", b"application/json"), (b"Cache-Control", b"no-store")]
        if error.retryAfter is not None:
            headers.append((b"Retry-After", str(error.retryAfter).encode("ascii")))
        headers += extra or []
        request.response.respond(
            error.status,
            _REASONS.get(error.status, b"Error"),
            headers,
            errorBody(error.code, error.message, error.ztnaCode),
        )

    def _failed(self, request: Request, reason: Failure) -> None:
        if reason.check(ApiError):
            self._refuse(request, reason.value)
        elif reason.check(RegistryUnavailable):
            _log.warn("EMS {ems}: registry unavailable: {error}", ems=self._emsId, error=reason.getErrorMessage())
            self._refuse(
                request,
                ApiError(503, "registry-unavailable", "the registry cannot be used now; try later", retryAfter=5),
            )
        elif request.response.finished:
            # The client went away, or the HTTP layer answered the body
            # itself (too large): nothing to say.
            return
        else:
            _log.failure("EMS {ems}: request failed", reason, ems=self._emsId)
            self._refuse(request, ApiError(500, "internal-error", "the EMS failed; see its log"))

    # Enrollment

    def _proof(self, request: Request) -> Proof | None:
        """
        The device certificate presented on the connection, if it is a
        sound certificate of this EMS.  Whether it is still the device's
        (serial, revocation) is checked in the enrollment transaction,
        against the registry itself rather than the index, which may be a
        moment behind.
        """
        try:
            presented = presentedCertificate(request.connection.transport)
        except (NotVerifiedHere, HandshakeIncomplete):
            return None
        if (
            presented is None
            or presented.problem is not None
            or presented.emsId != self._emsId
            or presented.uid is None
        ):
            return None
        return Proof(uid=presented.uid, certSerial=presented.certSerial)

    def _enroll(self, request: Request, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        source = _peerAddress(request)
        try:
            enrollment = parseEnrollmentRequest(body)
        except ApiError as e:
            self._refused(source, None, e.message)
            raise
        proof = self._proof(request)
        now = self._reactor.seconds()

        def run(store: IEndpointStore) -> Deferred[Enrolled]:
            return deferToThreadPool(
                self._reactor, self._pool(), self._enroller.enroll, store, enrollment, source, proof, now
            )

        def indexed(result: Enrolled) -> Deferred[Enrolled]:
            record = result.record
            return self._whenIndexed(record.uid, record.certSerial).addCallback(lambda _: result)

        def enrolled(result: Enrolled) -> dict[str, Any]:
            record = result.record
            self._logEvent(
                EventLog(
                    DEVICE_ENROLLED,
                    msg=f"device {record.uid} {'enrolled' if result.created else 're-enrolled'} "
                    f"with token {result.token.id}",
                    srcIp=source,
                    uid=record.uid,
                    certSerial=record.certSerial,
                    emsSerial=self._emsSerial,
                    user=record.user,
                    hostname=record.hostName,
                    tags=sorted(record.tags),
                )
            )
            return {
                "uid": record.uid,
                "certSerial": record.certSerial,
                "certificate": certificatePem(result.certificate).decode("ascii"),
                "caCertificates": [certificatePem(c).decode("ascii") for c in self._ca.trustedCertificates()],
                "emsSerial": self._emsSerial,
                "tenantId": self._tenantId,
                "tags": sorted(record.tags),
                "gateways": list(self._gateways),
                "telemetryInterval": telemetryInterval(self._threshold),
                "created": result.created,
                "emsPin": self._listenerPin,
            }

        def refused(reason: Failure) -> Failure:
            if reason.check(TokenRefused):
                refusal: TokenRefused = reason.value
                if refusal.guess:
                    self.limiter.failed(source)
                self._refused(source, enrollment.uid, refusal.message)
                return Failure(ApiError(_TOKEN_STATUS.get(refusal.code, 403), refusal.code, refusal.message))
            if reason.check(ApiError):
                error: ApiError = reason.value
                if error.code in ("reenrollment-refused", "uid-mismatch"):
                    self.limiter.failed(source)
                self._refused(source, enrollment.uid, error.message)
            return reason

        return self._store().addCallback(run).addCallback(indexed).addCallbacks(enrolled, refused)

    def _whenIndexed(self, uid: str, certSerial: str) -> Deferred[None]:
        """
        Fire once the index holds C{uid} with C{certSerial}, or after
        C{indexWait} seconds (the enrollment stands either way: the index
        catches up within its poll interval).
        """
        done: Deferred[None] = Deferred()
        index = self._index
        if index is None:
            done.callback(None)
            return done

        def current() -> bool:
            record = index.lookup(uid)
            return record is not None and record.certSerial == certSerial

        if current():
            done.callback(None)
            return done

        def changed(changedUid: str, record: Any) -> None:
            if not done.called and changedUid == uid and current():
                finish()

        def finish() -> None:
            unsubscribe()
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        unsubscribe = index.subscribe(changed)
        timer = self._reactor.callLater(self._indexWait, finish)
        return done

    def _refused(self, source: str | None, uid: str | None, message: str) -> None:
        self._logEvent(
            EventLog(ENROLLMENT_REFUSED, msg=message, srcIp=source, uid=uid, emsSerial=self._emsSerial)
        )

    def _pool(self) -> Any:
        if self._threadpool is None:
            self._threadpool = self._reactor.getThreadPool()
        return self._threadpool

    # Telemetry

    def _telemetry(self, request: Request, body: dict[str, Any]) -> Deferred[dict[str, Any]]:
        try:
            presented = presentedCertificate(request.connection.transport)
        except (NotVerifiedHere, HandshakeIncomplete):
            presented = None
        if presented is None:
            raise ApiError(
                401, "certificate-required", "telemetry needs the device certificate", ztnaCode="002"
            )
        verdict = self._verifier.judge(presented)
        if presented.emsId is not None and presented.emsId != self._emsId:
            raise ApiError(
                403,
                "wrong-ems",
                f"this device belongs to EMS {presented.emsId}; report to its listener",
                ztnaCode="001",
            )
        if verdict.kind is VerdictKind.REGISTRY_UNAVAILABLE:
            raise ApiError(503, "registry-unavailable", "the registry cannot be read now", retryAfter=5)
        if verdict.kind not in _MAY_REPORT or presented.uid is None:
            error = verdict.error
            raise ApiError(
                403,
                "device-refused",
                verdict.reason,
                ztnaCode=error.code if error is not None else "001",
            )
        device = parseDeviceReport(body, "the telemetry report")
        source = _peerAddress(request)
        report = Report(
            uid=presented.uid,
            certSerial=presented.certSerial,
            device=device,
            sourceIp=source,
            onNet=self._onNet(source),
            receivedAt=self._reactor.seconds(),
        )

        def recorded(record: Any) -> dict[str, Any]:
            return {
                "uid": record.uid,
                "lastSeen": record.lastSeen,
                "publicIp": record.publicIp,
                "onNet": record.onNet,
                "telemetryInterval": telemetryInterval(self._threshold),
            }

        return self._writer.submit(report).addCallback(recorded)


class _Connections(HTTPServerFactory):
    """
    The EMS's HTTP factory, remembering its connections so that stopping
    the service can close them (an idle keep-alive connection would
    otherwise outlive the listener).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()

    def buildProtocol(self, addr: object) -> Any:
        """
        Build and remember a connection's protocol.
        """
        protocol = super().buildProtocol(addr)
        self.live.add(protocol)
        return protocol

    def closeAll(self) -> None:
        """
        Abort every connection still open.
        """
        for protocol in list(self.live):
            transport = getattr(protocol, "transport", None)
            if transport is not None and getattr(transport, "connected", False):
                transport.abortConnection()


class EmsService(Service):
    """
    One EMS's listener and its helpers, while the gateway runs.

    @ivar api: the request handler.
    @ivar port: the listening port, once started.
    @ivar writer: the telemetry writer.
    @ivar monitor: the presence monitor.
    """

    def __init__(
        self,
        reactor: Any,
        ems: Any,
        ca: EmsCertificateAuthority,
        listenerCertificate: ListenerCertificate,
        index: IEndpointIndex,
        verifier: DeviceCertificateVerifier,
        openStore: Callable[[], IEndpointStore],
        onNet: Callable[[str | None], bool],
        logEvent: Callable[[EventLog], None],
        gateways: tuple[str, ...] = (),
        port: int | None = None,
        threadpool: Any = None,
        enroller: Enroller | None = None,
        limits: ServerLimits | None = None,
        listen: Callable[..., Any] | None = None,
        monitorPresence: bool = True,
    ) -> None:
        """
        @param reactor: the reactor.
        @param ems: the C{fctems} entry (C{id}, C{serialNumber},
            C{tenantId}, C{httpsPort}, C{outOfSyncThreshold}).
        @param ca: its CA.
        @param listenerCertificate: what the listener presents and where it
            binds.
        @param index: the EMS's registry index.
        @param verifier: the shared device-certificate verifier.
        @param openStore: opens the EMS's registry (called in a thread).
        @param onNet: whether a source address is on-net.
        @param logEvent: writes event log entries.
        @param gateways: C{HOST:PORT} of the access-proxy VIPs.
        @param port: the port to listen on; C{https-port} by default (0
            lets the kernel choose, for tests).
        @param threadpool: where registry work runs; the reactor's by
            default.
        @param enroller: enrolls devices; one with the CA by default.
        @param limits: HTTP limits; the EMS's defaults by default.
        @param listen: how to listen, called like
            L{ztnagw.tls.listener.listenTLS} (which it is by default); a
            worker process adopts the socket its supervisor bound.
        @param monitorPresence: whether to log devices going offline and
            coming back; of several worker processes only one does, so that
            each change is logged once.
        """
        self._reactor = reactor
        self._ems = ems
        self._listener = listenerCertificate
        self._verifier = verifier
        self._openStore = openStore
        self._threadpool = threadpool
        self._port = ems.httpsPort if port is None else port
        self._limits = limits or ServerLimits(maxBodyLength=MAX_BODY, headTimeout=10.0, bodyTimeout=10.0)
        self._listen = listen
        self._monitorPresence = monitorPresence
        self._storeValue: IEndpointStore | None = None
        self._storeReady: Deferred[IEndpointStore] | None = None
        self._storeWaiters: list[Deferred[IEndpointStore]] = []
        self._storeFailure: Failure | None = None
        self.port: Any = None
        self._factory: _Connections | None = None
        self.setName(f"ems{ems.id}")
        self.writer = TelemetryWriter(reactor, lambda: self._storeValue, threadpool)
        self.monitor = PresenceMonitor(
            index, reactor, ems.outOfSyncThreshold, ems.serialNumber or "", logEvent
        )
        if enroller is None:
            enroller = Enroller(ca, ems.serialNumber or "", ems.tenantId, onNet)
        self.api = EmsApi(
            reactor,
            ems.id,
            ems.serialNumber or "",
            ems.tenantId,
            ca,
            enroller,
            self.writer,
            verifier,
            self._store,
            onNet,
            ems.outOfSyncThreshold,
            logEvent,
            gateways,
            threadpool,
            listenerPin=listenerCertificate.pin,
            index=index,
        )

    def _pool(self) -> Any:
        if self._threadpool is None:
            self._threadpool = self._reactor.getThreadPool()
        return self._threadpool

    def _store(self) -> Deferred[IEndpointStore]:
        if self._storeValue is not None:
            return succeed(self._storeValue)
        if self._storeFailure is not None:
            return fail(self._storeFailure)
        d: Deferred[IEndpointStore] = Deferred()
        self._storeWaiters.append(d)
        return d

    def privilegedStartService(self) -> None:
        """
        Listen, while the process may still bind privileged ports (twistd
        calls this before it drops privileges).
        """
        Service.privilegedStartService(self)
        self._startListening()

    def startService(self) -> None:
        """
        Open the registry (in a thread) and listen, unless
        L{privilegedStartService} already did.
        """
        Service.startService(self)
        opening = deferToThreadPool(self._reactor, self._pool(), self._openStore)

        def opened(store: IEndpointStore) -> None:
            self._storeValue = store
            waiters, self._storeWaiters = self._storeWaiters, []
            for waiter in waiters:
                waiter.callback(store)

        def failed(reason: Failure) -> None:
            _log.critical(
                "EMS {ems}: cannot open the registry ({error}); enrollment and "
                "telemetry fail until the gateway restarts",
                ems=self._ems.id,
                error=reason.getErrorMessage(),
            )
            self._storeFailure = reason
            waiters, self._storeWaiters = self._storeWaiters, []
            for waiter in waiters:
                waiter.errback(reason)

        self._storeReady = opening.addCallbacks(opened, failed)
        if self.port is None:
            self._startListening()
        if self._monitorPresence:
            self.monitor.start()

    def _startListening(self) -> None:
        listen = self._listen
        if listen is None:
            from ztnagw.tls.listener import listenTLS as listen
        creator = ServerConnectionCreator(
            ServerCertificate(self._listener.certificate, self._listener.privateKey),
            self._verifier,
        )
        self._factory = _Connections(self.api, self._reactor, self._limits, JsonErrorPages())
        self.port = listen(self._reactor, self._port, self._listener.bindAddress, creator, self._factory)
        address = self.port.getHost()
        _log.info(
            "EMS {ems} listening on {host}:{port} (enroll with --ems {url} --pin {pin})",
            ems=self._ems.id,
            host=address.host,
            port=address.port,
            url=f"https://{self._listener.bindAddress}:{address.port}",
            pin=self._listener.pin,
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, write pending telemetry, close the registry.
        """
        Service.stopService(self)
        self.monitor.stop()
        stopping: Deferred[Any] = succeed(None)
        if self.port is not None:
            stopping = Deferred.fromCoroutine(_stopListening(self.port))
            self.port = None
            assert self._factory is not None
            self._factory.closeAll()
        stopping.addCallback(lambda _: self.writer.stop())
        if self._storeReady is not None:
            stopping.addCallback(lambda _: self._storeReady)

        def close(_: object) -> Deferred[None] | None:
            store, self._storeValue = self._storeValue, None
            if store is None:
                return None
            return deferToThreadPool(self._reactor, self._pool(), store.close)

        return stopping.addCallback(close)


async def _stopListening(port: Any) -> None:
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result

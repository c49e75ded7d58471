# -*- test-case-name: tests.test_tap, tests.test_workers -*-
"""
The running gateway, as a tree of Twisted services.

L{GatewayService} is what C{twistd -n ztnagw} runs: it owns the registry
index of every enabled EMS, the VIP listeners, the EMS listeners and the
log writers.  Starting and stopping it starts and stops all of them in
order; SIGTERM stops it cleanly.  Listening happens in
C{privilegedStartService}, before twistd drops privileges.

With C{set workers 1} it is the whole daemon.  With several workers, each
worker process runs one (L{ztnagw.workers}) on sockets its supervisor
bound (L{ztnagw.supervisor}), and tags its log lines with its worker id.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ztnagw.control import ControlService
from ztnagw.ems.service import EmsService, gatewayAddresses
from ztnagw.ems.stores import SharedStore
from ztnagw.ems.telemetry import onNetChecker
from ztnagw.gateway.health import HealthMonitor, realServerStatus
from ztnagw.gateway.identity import IdentityKeys
from ztnagw.gateway.persistence import loadPersistenceKey
from ztnagw.gateway.runtime import AccessProxyService, LogFilesService, logDestinations
from ztnagw.logs import LogWriter
from ztnagw.registry import openStore
from ztnagw.registry.index import EndpointIndex
from ztnagw.startup import PreparedGateway, StartupFailed, enabledEms
from ztnagw.tls.server import DeviceCertificateVerifier
from ztnagw.workers import WorkerLogDestination

_log = Logger()


@contextmanager
def stopForListenError() -> Iterator[None]:
    """
    Turn an address that cannot be listened on (taken, not on this host,
    below 1024 without the privilege) into a clean stop of the daemon:
    status 1 and one line with the reason, instead of a traceback out of
    twistd.  Nothing can be served half-listening, and the operator's fix
    (another port, stopping the other program) is in the message.
    """
    try:
        yield
    except CannotListenError as e:
        _log.critical("ztnagw cannot start: {error}", error=e)
        raise SystemExit(1) from None
    except OSError as e:
        # A bind of our own (the supervisor's sockets): its message names
        # the VIP and the address.
        _log.critical("ztnagw cannot start: {error}", error=e.strerror or e)
        raise SystemExit(1) from None


class RegistryService(Service):
    """
    Keeps one EMS's registry index current while the gateway runs.

    @ivar index: the index; the TLS layer and the access decision read it.
    """

    def __init__(self, index: EndpointIndex, emsId: int) -> None:
        self.index = index
        self.emsId = emsId
        self.setName(f"registry-ems{emsId}")
        self._firstLoad: Deferred[None] | None = None

    def startService(self) -> None:
        """
        Start polling the store.  Until the first load completes the index
        is unhealthy and requests fail closed.
        """
        Service.startService(self)
        started = self.index.start()
        started.addCallback(
            lambda _: _log.info(
                "EMS {ems} registry loaded: {count} endpoints",
                ems=self.emsId,
                count=sum(1 for _ in self.index.records()),
            )
        )
        started.addErrback(
            lambda f: _log.failure(
                "EMS {ems} registry could not be loaded; devices are refused "
                "until it can",
                f,
                ems=self.emsId,
            )
        )
        self._firstLoad = started

    def whenLoaded(self) -> Deferred[None]:
        """
        A Deferred that fires (with C{None}) once the first load has been
        tried after the start, whether it worked or not.
        """
        if self._firstLoad is None:
            return fail(RuntimeError("the registry service has not started"))
        done: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            done.callback(None)
            return result

        self._firstLoad.addBoth(fire)
        return done

    def stopService(self) -> Deferred[None]:
        """
        Stop polling, after any read in progress.
        """
        Service.stopService(self)
        return self.index.stop()


class GatewayService(MultiService):
    """
    The whole gateway.

    @ivar prepared: the configuration and what L{ztnagw.startup.prepare}
        made ready.
    @ivar indexes: the registry index of each enabled EMS, by C{fctems} id.
    @ivar verifier: the one device-certificate verifier every TLS listener
        (VIPs, EMS listeners) shares.
    @ivar logWriter: where event and traffic logs go.
    @ivar emsServices: the listener service of each enabled EMS, by id.
    @ivar accessProxies: the VIP listeners and what they share.
    @ivar health: the real servers' health checks.
    @ivar control: the control channel of the admin command (C{None} in
        workers other than the first).
    @ivar workerId: this process's worker id (1, 2, ...) when it is one of
        several worker processes, else C{None}.
    """

    def __init__(
        self,
        prepared: PreparedGateway,
        reactor: Any,
        configPath: str | None = None,
        workerId: int | None = None,
        workers: int = 1,
        listen: Callable[..., Any] | None = None,
    ) -> None:
        """
        @param prepared: the prepared configuration.
        @param reactor: the reactor.
        @param configPath: the configuration file, for the log.
        @param workerId: this worker's id when it is one of C{workers}
            worker processes; C{None} for the single-process daemon.  Log
            lines carry it (C{workerid}), and only worker 1 logs devices
            going offline, so that each change is logged once.
        @param workers: how many worker processes serve the gateway.
        @param listen: how VIPs and EMS listeners listen, called like
            L{ztnagw.tls.listener.listenTLS} (the default); a worker adopts
            the sockets its supervisor bound
            (L{ztnagw.workers.InheritedListeners.listen}).
        """
        MultiService.__init__(self)
        self.prepared = prepared
        self.reactor = reactor
        self.configPath = configPath
        self.workerId = workerId
        self._workers = workers
        config = prepared.config
        stateDir = config.systemGlobal.stateDir
        self.indexes: Mapping[int, EndpointIndex] = {}
        # One registry connection per EMS in this process, shared by the
        # index and the EMS listener (see ztnagw.ems.stores for why).
        self._stores: dict[int, SharedStore] = {}
        for ems in enabledEms(config):
            shared = SharedStore(lambda ems=ems: openStore(ems.registry, stateDir, ems.id))
            self._stores[ems.id] = shared
            index = EndpointIndex(shared.acquire, reactor)
            self.indexes[ems.id] = index  # type: ignore[index]
            RegistryService(index, ems.id).setServiceParent(self)
        self.verifier = DeviceCertificateVerifier(
            {
                emsId: authority.trustedCertificates()
                for emsId, authority in prepared.authorities.items()
            },
            self.indexes,
            {ems.id: ems for ems in enabledEms(config)},
            reactor,
        )
        destinations = logDestinations(config)
        if workerId is not None:
            destinations = [WorkerLogDestination(d, workerId) for d in destinations]
        self.logWriter = LogWriter(
            reactor, destinations, deviceName=config.systemGlobal.hostname
        )
        self.emsServices: dict[int, EmsService] = {}
        for ems in enabledEms(config):
            service = EmsService(
                reactor,
                ems,
                prepared.authorities[ems.id],
                prepared.emsListeners[ems.id],
                self.indexes[ems.id],
                self.verifier,
                self._stores[ems.id].acquire,
                onNetChecker(config, ems),
                self.logWriter.write,
                gatewayAddresses(config),
                listen=listen,
                monitorPresence=workerId is None or workerId == 1,
            )
            self.emsServices[ems.id] = service
            service.setServiceParent(self)
        LogFilesService(self.logWriter, reactor).setServiceParent(self)
        self.accessProxies = AccessProxyService(
            prepared, reactor, self.indexes, self.verifier, self.logWriter, listen=listen
        )
        self.accessProxies.setServiceParent(self)
        self._startPools(stateDir, reactor)

    def _startPools(self, stateDir: str, reactor: Any) -> None:
        """
        What real-server pools need besides the access proxy: the keys of
        the state directory (persistence cookies, identity assertions), the
        health checks, and the control channel that shows them.

        @raise StartupFailed: a key cannot be read or created, or a C{ping}
            health check cannot open an ICMP socket.
        """
        router = self.accessProxies.router
        try:
            router.useKeys(loadPersistenceKey(stateDir), IdentityKeys.load(stateDir), reactor)
        except OSError as e:
            raise StartupFailed(f"gateway keys in {stateDir}: {e}") from e
        try:
            self.health = HealthMonitor(list(router.members()), reactor, router.routeOf, self.logWriter.write)
        except OSError as e:
            raise StartupFailed(f"health-check-proto ping: {e}") from e
        self.health.setServiceParent(self)
        self.control: ControlService | None = None
        if getattr(self, "workerId", None) in (None, 1):
            # One control socket per state directory: with several worker
            # processes, worker 1 answers (for itself).
            self.control = ControlService(stateDir, reactor)
            self.control.register(
                "realserver list",
                lambda arguments: realServerStatus(router.members(), reactor.seconds()),
            )
            self.control.setServiceParent(self)

    def whenRegistriesLoaded(self) -> Deferred[None]:
        """
        A Deferred that fires once every registry index has tried its first
        load (after L{startService}).  A worker accepts connections only
        then: one restarted under load would otherwise refuse the devices
        waiting in its queue before it knows them.
        """
        services = [child for child in self if isinstance(child, RegistryService)]
        loading = gatherResults([service.whenLoaded() for service in services])
        return loading.addCallback(lambda _: None)

    def privilegedStartService(self) -> None:
        """
        Listen on every address (before twistd drops privileges).  An
        address that cannot be listened on stops the daemon with the
        reason (see L{stopForListenError}).
        """
        with stopForListenError():
            MultiService.privilegedStartService(self)

    def startService(self) -> None:
        """
        Start every part, and say what runs.
        """
        with stopForListenError():
            self._startService()

    def _startService(self) -> None:
        config = self.prepared.config
        _log.info(
            "ztnagw {hostname} starting with {path}: {vips} VIP(s), "
            "{ems} EMS connector(s) enabled{worker}",
            hostname=config.systemGlobal.hostname,
            path=self.configPath,
            vips=len(config.vips),
            ems=len(self.indexes),
            worker=""
            if self.workerId is None
            else f" (worker {self.workerId} of {self._workers})",
            workerId=self.workerId,
        )
        MultiService.startService(self)

# -*- test-case-name: tests.test_service -*-
"""
The running gateway, as a tree of Twisted services.

L{GatewayService} is what C{twistd -n ztnagw} runs: it owns the registry
index of every enabled EMS and, as later parts are added, the VIP
listeners, the EMS listener and the log writers.  Starting and stopping it
starts and stops all of them in order; SIGTERM stops it cleanly.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
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

_log = Logger()


class RegistryService(Service):
    """
    Keeps one EMS's registry index current while the gateway runs.

    @ivar index: the index; the TLS layer and the access decision read it.
    """

    def __init__(self, index: EndpointIndex, emsId: int) -> None:
        self.index = index
        self.emsId = emsId
        self.setName(f"registry-ems{emsId}")

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
    """

    def __init__(
        self, prepared: PreparedGateway, reactor: Any, configPath: str | None = None
    ) -> None:
        MultiService.__init__(self)
        self.prepared = prepared
        self.reactor = reactor
        self.configPath = configPath
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
        self.logWriter = LogWriter(
            reactor, logDestinations(config), deviceName=config.systemGlobal.hostname
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
            )
            self.emsServices[ems.id] = service
            service.setServiceParent(self)
        LogFilesService(self.logWriter, reactor).setServiceParent(self)
        self.accessProxies = AccessProxyService(
            prepared, reactor, self.indexes, self.verifier, self.logWriter
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

    def startService(self) -> None:
        """
        Start every part, and say what runs.
        """
        config = self.prepared.config
        _log.info(
            "ztnagw {hostname} starting with {path}: {vips} VIP(s), "
            "{ems} EMS connector(s) enabled",
            hostname=config.systemGlobal.hostname,
            path=self.configPath,
            vips=len(config.vips),
            ems=len(self.indexes),
        )
        MultiService.startService(self)

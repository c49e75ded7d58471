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

from ztnagw.registry import openStore
from ztnagw.registry.index import EndpointIndex
from ztnagw.startup import PreparedGateway, enabledEms

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
        for ems in enabledEms(config):
            index = EndpointIndex(
                lambda ems=ems: openStore(ems.registry, stateDir, ems.id), reactor
            )
            self.indexes[ems.id] = index  # type: ignore[index]
            RegistryService(index, ems.id).setServiceParent(self)

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

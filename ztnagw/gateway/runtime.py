# -*- test-case-name: tests.gateway.test_runtime -*-
"""
The access proxy as the daemon runs it: every enabled VIP listening, with
the collaborators they share, built once from the prepared configuration.

L{ztnagw.service.GatewayService} owns what the whole gateway shares (the
registry indexes, the device-certificate verifier, the log writer) and
adds an L{AccessProxyService}, which owns what the VIPs share: the
compiled policies and the authorize path, the live-session tracker, the
name resolver and the background resolution of policy addresses, the real
servers, the upstream connection pools and the tunnel handler.

It also holds what the log files need from a daemon (L{logDestinations},
L{LogFilesService}): the destinations the configuration names, opened
before the reactor runs so that a log file that cannot be opened stops
the start with a clear message, reopened on SIGHUP (log rotation) and
closed at shutdown.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Mapping

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ztnagw.access import PolicySet
from ztnagw.config.model import Config
from ztnagw.gateway.context import AccessGate
from ztnagw.gateway.interfaces import IResolver, ITunnelHandler
from ztnagw.gateway.limits import DEFAULT_LIMIT, ConnectionLimits, DeviceLimitedHandler
from ztnagw.gateway.proxy import (
    AccessProxyHandler,
    GatewayErrorPages,
    UpstreamPools,
    VipHTTPFactory,
    serverLimits,
)
from ztnagw.gateway.realservers import RealServerConfigurationError, RealServerRouter
from ztnagw.gateway.resolver import CachingResolver, NameWatch
from ztnagw.gateway.vip import VipService, serverConnectionCreator, vipSite
from ztnagw.logs import FileLogDestination, ILogDestination, LogFormat, LoggerLogDestination, LogWriter
from ztnagw.registry.interfaces import IEndpointIndex
from ztnagw.startup import PreparedGateway, StartupFailed
from ztnagw.tls.client import ClientCreatorCache
from ztnagw.tls.posture import TLSConfigurationError
from ztnagw.tls.server import DeviceCertificateVerifier

__all__ = ["AccessProxyService", "LogFilesService", "logDestinations"]

_log = Logger()


def logDestinations(config: Config) -> list[ILogDestination]:
    """
    Where log lines go: twistd's log, and the C{log-file} of C{config
    system global} when one is set.  Opens the file: call it before the
    reactor runs.

    @raise StartupFailed: the log file cannot be opened.
    """
    destinations: list[ILogDestination] = [LoggerLogDestination()]
    settings = config.systemGlobal
    if settings.logFile is not None:
        try:
            destinations.append(FileLogDestination(settings.logFile, LogFormat(settings.logFormat)))
        except OSError as e:
            raise StartupFailed(
                f"system global log-file {settings.logFile}: cannot open it: {e.strerror or e}"
            )
    return destinations


class LogFilesService(Service):
    """
    Reopens the log writer's files on SIGHUP (after C{logrotate} moved them
    away) and closes them when the gateway stops.
    """

    def __init__(self, logWriter: LogWriter, reactor: Any, installSignalHandler: bool = True) -> None:
        """
        @param logWriter: the gateway's log writer.
        @param reactor: the reactor (the reopening runs in its thread).
        @param installSignalHandler: whether to handle SIGHUP (tests say
            no).
        """
        self._logWriter = logWriter
        self._reactor = reactor
        self._install = installSignalHandler
        self._previous: Any = None
        self.setName("log-files")

    def reopen(self) -> None:
        """
        Reopen every log file now.
        """
        _log.info("Reopening log files")
        self._logWriter.reopen()

    def _signal(self, number: int, frame: object) -> None:
        # A signal interrupts whatever the reactor thread was doing; the
        # reopening waits for the reactor's next turn.
        self._reactor.callFromThread(self.reopen)

    def startService(self) -> None:
        """
        Handle SIGHUP.
        """
        Service.startService(self)
        if self._install and hasattr(signal, "SIGHUP"):
            self._previous = signal.signal(signal.SIGHUP, self._signal)

    def stopService(self) -> None:
        """
        Stop handling SIGHUP; close the files.
        """
        Service.stopService(self)
        if self._install and hasattr(signal, "SIGHUP") and self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        self._logWriter.close()


class AccessProxyService(MultiService):
    """
    Every enabled VIP and what they share (see the module docstring).

    @ivar gate: the authorize path (with the live-session tracker).
    @ivar resolver: the name resolver the proxy and the tunnels share.
    @ivar router: chooses real servers.
    @ivar pools: the upstream connection pools.
    @ivar tunnels: serves TCP forwarding tunnel requests.
    @ivar vips: the listener of each enabled VIP, by name.
    @ivar limits: the connection limits and counts of each enabled VIP, by
        name (L{ztnagw.gateway.limits}).
    """

    def __init__(
        self,
        prepared: PreparedGateway,
        reactor: Any,
        indexes: Mapping[int, IEndpointIndex],
        verifier: DeviceCertificateVerifier,
        logWriter: LogWriter,
        resolver: IResolver | None = None,
        tunnelHandler: Callable[[Any, IResolver], ITunnelHandler] | None = None,
        listen: Callable[..., Any] | None = None,
    ) -> None:
        """
        @param prepared: the prepared configuration.
        @param reactor: the reactor.
        @param indexes: the registry index of each enabled EMS.
        @param verifier: the shared device-certificate verifier.
        @param logWriter: the gateway's log writer.
        @param resolver: resolves names (by default with the reactor's
            name resolver, cached).
        @param tunnelHandler: makes the tunnel handler from the reactor and
            the resolver (by default the TCP forwarding access proxy's, with
            the real-server router's pools).
        @param listen: how VIPs listen (tests, worker processes);
            L{listenTLS} by default.
        @raise StartupFailed: a real server or a VIP certificate cannot be
            used as configured.
        """
        MultiService.__init__(self)
        self.setName("access-proxy")
        config = prepared.config
        policySet = PolicySet.fromConfig(config)
        self.resolver: IResolver = resolver if resolver is not None else CachingResolver(
            reactor.nameResolver, reactor
        )
        self._policyNames = NameWatch(self.resolver, policySet.fqdns(), reactor)
        self.gate = AccessGate(
            config,
            policySet,
            verifier.judge,
            reactor,
            logWriter,
            indexes,
            self._policyNames.resolved,
        )
        anchors = tuple(
            certificate
            for certificates in prepared.realServerTrust.values()
            for certificate in certificates
        )
        try:
            self.router = RealServerRouter(config, self.resolver, ClientCreatorCache(), anchors)
        except RealServerConfigurationError as e:
            raise StartupFailed(str(e)) from e
        self.pools = UpstreamPools(reactor)
        if tunnelHandler is None:
            from ztnagw.gateway.tunnel import TunnelHandler

            # The tunnels choose among the router's members, whose health
            # the health checks keep current.
            self.tunnels: ITunnelHandler = TunnelHandler(reactor, self.resolver, self.router)
        else:
            self.tunnels = tunnelHandler(reactor, self.resolver)
        self.vips: dict[str, VipService] = {}
        self.limits: dict[str, ConnectionLimits] = {}
        for vip in config.vips.values():
            if not vip.status:
                continue
            site = vipSite(config, vip, prepared.certificates)
            try:
                creator = serverConnectionCreator(site, prepared.certificates, verifier, self.gate)
            except TLSConfigurationError as e:
                raise StartupFailed(f"firewall vip {vip.name!r}: {e}") from e
            accessProxy = site.accessProxy
            limits = ConnectionLimits(
                reactor,
                vip.name,
                accessProxy.maxConnectionsPerSource if accessProxy is not None else DEFAULT_LIMIT,
                accessProxy.maxConnectionsPerDevice if accessProxy is not None else DEFAULT_LIMIT,
            )
            self.limits[vip.name] = limits
            handler = DeviceLimitedHandler(
                AccessProxyHandler(site, self.gate, self.router, self.pools, reactor, self.tunnels),
                limits,
            )
            factory = VipHTTPFactory(handler, reactor, serverLimits(accessProxy), GatewayErrorPages())
            factory.connectionLimits = limits
            extra = {} if listen is None else {"listen": listen}
            service = VipService(reactor, site, creator, factory, **extra)
            service.setServiceParent(self)
            self.vips[vip.name] = service

    def startService(self) -> None:
        """
        Start resolving policy addresses, following live sessions, and
        listening.
        """
        self._policyNames.start()
        self.gate.sessions.start()
        MultiService.startService(self)

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then everything else; end the tunnels.
        """
        stopped = MultiService.stopService(self)

        def rest(result: object) -> object:
            self.gate.sessions.stop()
            self._policyNames.stop()
            self.pools.closeIdle()
            closeAll = getattr(self.tunnels, "closeAll", None)
            if closeAll is not None:
                closeAll("the gateway is stopping")
            return result

        return stopped.addBoth(rest)

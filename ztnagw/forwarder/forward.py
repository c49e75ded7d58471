# -*- test-case-name: tests.forwarder.test_forward -*-
"""
C{ztnagw-forward}'s forwarding mode: the FortiClient role for TCP.

Local applications connect to the forwarder; each connection gets its own
tunnel through the gateway to its destination (L{ztnagw.forwarder.tunnel})
and the bytes are relayed both ways (L{ztnagw.tunnel.relay}).  The modes can
be combined in one process:

  - C{-L [BIND:]LPORT:DEST:DPORT} (repeatable), ssh-style;
  - C{--rules FILE}: FortiClient-style rules (L{ztnagw.forwarder.rules});
  - C{-D [BIND:]PORT}: a SOCKS5 server whose clients name the destination
    (L{ztnagw.forwarder.socks});
  - C{--stdio DEST:DPORT}: one tunnel on standard input and output, for
    C{ssh -o ProxyCommand='ztnagw-forward --stdio %h:%p ...'}; the process
    ends with the tunnel.

Listening addresses are loopback unless C{--allow-remote-clients} is given:
whoever can connect uses this device's identity.  A refused tunnel closes
that one connection and logs why (C{blocked by gateway: 063 client
certificate revoked}); an unreachable gateway is retried with backoff;
nothing a gateway or an application does stops the process.  SIGINT and
SIGTERM stop accepting, give open tunnels a grace period to finish, then
close them.  While it runs, the forwarder also sends the device's telemetry
(the agent's L{TelemetryService<ztnagw.forwarder.agent>}) when it uses an
enrolled profile, so the device stays online for the gateway.

One log line per tunnel, on standard error, when it ends: where it went,
how long it lasted, bytes each way, why it ended (C{--verbose} adds a line
when each tunnel opens, and the retries).
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from attrs import frozen
from cryptography import x509
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError, ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IListeningPort, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory
from twisted.internet.stdio import StandardIO
from twisted.logger import Logger
from twisted.python.failure import Failure

from ztnagw.forwarder import USER_AGENT, socks
from ztnagw.forwarder.rules import (
    ForwardRule,
    ListenAddress,
    RuleError,
    checkListenAddress,
    parseForwardSpec,
    parseGateway,
    parseListenAddress,
    parseRules,
)
from ztnagw.forwarder.tunnel import (
    Backoff,
    Gateway,
    GatewayUnreachable,
    TunnelFailed,
    TunnelOpener,
    TunnelRefused,
)
from ztnagw.tunnel.relay import CLIENT, COMPLETED, Relay, RelayEnd, RelayResult
from ztnagw.tunnel.wire import TunnelTarget, parseHostPort

__all__ = [
    "DEFAULT_GRACE",
    "ForwardedTunnel",
    "Forwarder",
    "Settings",
    "main",
    "parseArguments",
]

_log = Logger()

#: Seconds open tunnels get to finish after SIGINT/SIGTERM.
DEFAULT_GRACE = 10.0


def _size(count: int) -> str:
    return "1 byte" if count == 1 else f"{count} bytes"


class ForwardedTunnel:
    """
    One application connection and its tunnel: opening, relaying, and the
    log line at the end.

    @ivar number: the tunnel's number in this process (for logs).
    @ivar done: fires (with C{None}) when the tunnel is over, whatever
        happened.
    @ivar failure: why the tunnel could not be opened, if it could not.
    @ivar result: how the relay went, if it ran.
    """

    def __init__(
        self,
        number: int,
        name: str,
        client: RelayEnd,
        target: TunnelTarget,
        opener: TunnelOpener,
        clock: Any,
        onOpened: Callable[[], None] | None = None,
        onFailed: Callable[[Failure], None] | None = None,
    ) -> None:
        """
        @param number: see L{number}.
        @param name: the rule it comes from, for logs.
        @param client: the application's connection (connected).
        @param target: where to.
        @param opener: opens the tunnel through the gateway.
        @param clock: the reactor's time.
        @param onOpened: called when the tunnel is open, before the relay
            starts (the SOCKS server answers its client there).
        @param onFailed: called when it cannot be opened, instead of
            closing the application's connection (the SOCKS server answers
            its client there).
        """
        self.number = number
        self.name = name
        self.client = client
        self.target = target
        self.opener = opener
        self._clock = clock
        self._onOpened = onOpened
        self._onFailed = onFailed
        self.relay: Relay | None = None
        self.failure: str | None = None
        self.result: RelayResult | None = None
        self.done: Deferred[None] = Deferred()
        self._opening: Deferred[RelayEnd] | None = None
        self._origin = self._describeOrigin()

    def _describeOrigin(self) -> str:
        transport = self.client.transport
        peer = transport.getPeer() if transport is not None else None
        port = getattr(peer, "port", None)
        if port is None:
            return "stdio"
        host = getattr(peer, "host", "?")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def describe(self) -> str:
        """
        C{tunnel 3 [ssh] 127.0.0.1:50122 -> db:5432 via gw:443 (tls)}.
        """
        mode = "tls" if self.target.encrypted else "tls=0"
        return (
            f"tunnel {self.number} [{self.name}] {self._origin} -> "
            f"{self.target.hostPort()} via {self.opener.gateway} ({mode})"
        )

    def start(self) -> None:
        """
        Open the tunnel; give up if the application leaves first.
        """
        _log.debug("{tunnel}: opening", tunnel=self.describe())
        self._opening = self.opener.open(self.target)
        self._opening.addCallbacks(self._opened, self._failed)
        self.client.notifyLost().addCallback(self._clientLeft)

    def _clientLeft(self, _: None) -> None:
        opening = self._opening
        if opening is not None and not opening.called:
            opening.cancel()

    def _opened(self, server: RelayEnd) -> None:
        self._opening = None
        if self.client.lostReason is not None:
            server.abort()
            self._finish("the application left before the tunnel opened")
            return
        if self._onOpened is not None:
            self._onOpened()
        relay = Relay(self._clock, self.client, server)
        self.relay = relay
        _log.debug("{tunnel}: open", tunnel=self.describe())
        relay.start()
        relay.whenDone().addCallback(self._relayed)

    def _failed(self, reason: Failure) -> None:
        self._opening = None
        if self.client.lostReason is not None:
            why = "the application left before the tunnel opened"
        elif reason.check(TunnelRefused, TunnelFailed, GatewayUnreachable):
            why = reason.getErrorMessage()
        else:
            why = f"failed: {reason.getErrorMessage()}"
        self.failure = why
        if self._onFailed is not None:
            self._onFailed(reason)
        elif self.client.lostReason is None and self.client.transport is not None:
            # The application sees its connection end; what it sent is
            # dropped.
            self.client.transport.loseConnection()
        self._finish(why)

    def _relayed(self, result: RelayResult) -> None:
        self.result = result
        how = result.reason if result.outcome == COMPLETED else f"{result.outcome}: {result.reason}"
        _log.info(
            "{tunnel}: closed after {duration:.1f} s, {sent} sent, {received} "
            "received; {how}",
            tunnel=self.describe(),
            duration=result.duration,
            sent=_size(result.serverOut),
            received=_size(result.serverIn),
            how=how,
        )
        self.done.callback(None)

    def _finish(self, why: str) -> None:
        _log.warn("{tunnel}: {why}", tunnel=self.describe(), why=why)
        self.done.callback(None)

    def close(self, reason: str) -> None:
        """
        End the tunnel now, opening or open.
        """
        opening = self._opening
        if opening is not None and not opening.called:
            opening.cancel()
        if self.relay is not None:
            self.relay.close(reason)
        else:
            self.client.abort()


class _LocalEnd(RelayEnd):
    """
    An application's connection to a C{-L} or rules listener: it asks for
    its tunnel as soon as it is accepted.
    """

    def __init__(self, accepted: Callable[[RelayEnd], None]) -> None:
        super().__init__(CLIENT)
        self._accepted = accepted

    def connectionMade(self) -> None:
        """
        Open this connection's tunnel.
        """
        super().connectionMade()
        self._accepted(self)


class _Listener(Factory):
    """
    Builds one kind of L{RelayEnd} for a listening port.
    """

    noisy = False

    def __init__(self, build: Callable[[], RelayEnd]) -> None:
        self._build = build

    def buildProtocol(self, addr: object) -> RelayEnd:
        """
        A new application connection.
        """
        return self._build()


class Forwarder(MultiService):
    """
    The forwarding service: listeners for rules and SOCKS, and the tunnels
    of their connections.

    @ivar tunnels: the tunnels not finished yet.
    @ivar ports: the listening ports, once started, by rule or SOCKS
        address.
    """

    def __init__(
        self,
        reactor: Any,
        openers: Callable[[tuple[str, int] | None], TunnelOpener],
        rules: Sequence[ForwardRule] = (),
        socksAddresses: Sequence[ListenAddress] = (),
        socksEncrypted: bool = True,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        """
        @param reactor: the reactor (TCP, time).
        @param openers: the opener for a gateway C{(host, port)}, or for
            the default gateway given C{None}.
        @param rules: what to listen on and where to tunnel.
        @param socksAddresses: where to run SOCKS5 servers.
        @param socksEncrypted: the encryption choice of SOCKS tunnels.
        @param grace: seconds open tunnels get at shutdown.
        """
        MultiService.__init__(self)
        self.reactor = reactor
        self.rules = list(rules)
        self.socksAddresses = list(socksAddresses)
        self._openers = openers
        self._socksEncrypted = socksEncrypted
        self.grace = grace
        self.tunnels: set[ForwardedTunnel] = set()
        self.ports: dict[object, IListeningPort] = {}
        self._numbers = itertools.count(1)

    def startService(self) -> None:
        """
        Listen on every rule's address and every SOCKS address.

        @raise CannotListenError: an address is taken; nothing stays
            listening then.
        """
        try:
            for rule in self.rules:
                self.ports[rule] = self._listen(rule.listen, self._ruleListener(rule))
                _log.info(
                    "forwarding {listen} to {destination} [{name}]",
                    listen=str(self.boundAddress(rule)),
                    destination=rule.destination.hostPort(),
                    name=rule.name,
                )
            for address in self.socksAddresses:
                self.ports[address] = self._listen(
                    address, _Listener(lambda: socks.SocksConnection(self._socksRequest))
                )
                _log.info("SOCKS5 server on {listen}", listen=str(self.boundAddress(address)))
        except CannotListenError:
            for port in self.ports.values():
                port.stopListening()
            self.ports.clear()
            raise
        MultiService.startService(self)

    def _ruleListener(self, rule: ForwardRule) -> _Listener:
        def accepted(end: RelayEnd) -> None:
            self.tunnel(rule.name, end, rule.destination, rule.gateway)

        return _Listener(lambda: _LocalEnd(accepted))

    def _listen(self, address: ListenAddress, factory: Factory) -> IListeningPort:
        port: IListeningPort = self.reactor.listenTCP(
            address.port, factory, interface=address.host
        )
        return port

    def boundAddress(self, key: ForwardRule | ListenAddress) -> ListenAddress:
        """
        The address a rule's or SOCKS server's port is bound to (the
        system's choice for port 0).
        """
        address = key.listen if isinstance(key, ForwardRule) else key
        return ListenAddress(address.host, self.ports[key].getHost().port)  # type: ignore[attr-defined]

    def tunnel(
        self,
        name: str,
        client: RelayEnd,
        target: TunnelTarget,
        gateway: tuple[str, int] | None = None,
        onOpened: Callable[[], None] | None = None,
        onFailed: Callable[[Failure], None] | None = None,
    ) -> ForwardedTunnel:
        """
        Tunnel an application's connection to C{target}.

        @param gateway: the gateway to use; C{None} for the default one.
        """
        tunnel = ForwardedTunnel(
            next(self._numbers),
            name,
            client,
            target,
            self._openers(gateway),
            self.reactor,
            onOpened,
            onFailed,
        )
        self.tunnels.add(tunnel)
        tunnel.done.addCallback(lambda _: self.tunnels.discard(tunnel))
        tunnel.start()
        return tunnel

    def _socksRequest(
        self, connection: socks.SocksConnection, request: socks.SocksRequest
    ) -> None:
        self.tunnel(
            "socks",
            connection,
            request.target(self._socksEncrypted),
            onOpened=connection.succeeded,
            onFailed=lambda reason: connection.refuse(socksReplyFor(reason)),
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting; let open tunnels finish for the grace period, then
        close them.
        """
        MultiService.stopService(self)
        stopping = [maybeDeferred(port.stopListening) for port in self.ports.values()]
        self.ports.clear()
        pending = [tunnel.done for tunnel in list(self.tunnels)]
        if pending:
            _log.info(
                "stopping: open tunnels get {grace:g} s to finish ({count} open)",
                grace=self.grace,
                count=len(pending),
            )
        timer = self.reactor.callLater(self.grace, self._closeAll)
        finished: Deferred[None] = Deferred()

        def done(_: object) -> None:
            if timer.active():
                timer.cancel()
            finished.callback(None)

        DeferredList(pending + stopping, consumeErrors=True).addBoth(done)  # type: ignore[operator]
        return finished

    def _closeAll(self) -> None:
        for tunnel in list(self.tunnels):
            tunnel.close("the forwarder is stopping")


def socksReplyFor(reason: Failure) -> int:
    """
    The SOCKS reply code for a tunnel that could not be opened: the
    destination's name did not resolve (023): host unreachable; any other
    ZTNA denial: not allowed; gateway unreachable: network unreachable;
    anything else: general failure.
    """
    if reason.check(TunnelRefused):
        code = reason.value.refusal.code  # type: ignore[union-attr]
        if code == "023":
            return socks.HOST_UNREACHABLE
        if code is not None:
            return socks.NOT_ALLOWED
        return socks.GENERAL_FAILURE
    if reason.check(GatewayUnreachable):
        return socks.NETWORK_UNREACHABLE
    return socks.GENERAL_FAILURE


# ------------------------------------------------------------------ command


class UsageError(Exception):
    """
    The command line cannot be acted on; the message says why.
    """


@frozen
class Credentials:
    """
    The device identity tunnels are opened with.

    @ivar certificate: the device certificate.
    @ivar key: its private key.
    @ivar authorities: the CA certificates a gateway's certificate must
        chain to.
    @ivar profile: the enrolled profile, when the identity comes from one
        (its telemetry is sent while the forwarder runs).
    """

    certificate: x509.Certificate
    key: Any
    authorities: tuple[x509.Certificate, ...]
    profile: Any = None

    def creator(self, serverName: str) -> IOpenSSLClientConnectionCreator:
        """
        The TLS client side towards a gateway called C{serverName}.
        """
        from ztnagw.tls.client import deviceClientCreator

        return deviceClientCreator(serverName, self.authorities, self.certificate, self.key)


@frozen
class Settings:
    """
    What the command line asks for, checked.
    """

    rules: tuple[ForwardRule, ...]
    socks: tuple[ListenAddress, ...]
    stdio: TunnelTarget | None
    gateway: tuple[str, int] | None
    gatewayName: str | None
    encrypted: bool
    grace: float
    connectTimeout: float
    retryFor: float
    verbose: bool
    telemetry: bool
    profile: str | None
    certificate: str | None
    key: str | None
    ca: str | None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ztnagw-forward",
        description="Tunnel local TCP connections through a ztnagw (or FortiGate) "
        "ZTNA access proxy, as FortiClient does.",
        epilog="Examples: ztnagw-forward --gateway gw.example.com:443 -L "
        "2222:10.88.0.5:22;  ssh -o ProxyCommand='ztnagw-forward --gateway "
        "gw.example.com:443 --stdio %%h:%%p' admin@10.88.0.5;  ztnagw-forward "
        "--gateway gw.example.com:443 -D 1080",
    )
    identity = parser.add_argument_group("device identity")
    identity.add_argument(
        "--profile",
        metavar="NAME|DIR",
        help="the enrolled profile to use (default: 'default'; see 'ztnagw-forward enroll')",
    )
    identity.add_argument("--cert", metavar="FILE", help="device certificate (PEM), instead of a profile")
    identity.add_argument("--key", metavar="FILE", help="its private key (PEM, mode 0600)")
    identity.add_argument("--ca", metavar="FILE", help="CA certificate(s) the gateway's certificate must chain to")
    modes = parser.add_argument_group("what to forward (combinable)")
    modes.add_argument(
        "-L",
        dest="forward",
        action="append",
        default=[],
        metavar="[BIND:]LPORT:DEST:DPORT",
        help="listen on BIND:LPORT (127.0.0.1 by default) and tunnel each "
        "connection to DEST:DPORT (repeatable)",
    )
    modes.add_argument("--rules", metavar="FILE", help="a rules file (see docs/tfacp.md)")
    modes.add_argument(
        "-D",
        dest="socks",
        action="append",
        default=[],
        metavar="[BIND:]PORT",
        help="run a SOCKS5 server on BIND:PORT; each client names its destination (repeatable)",
    )
    modes.add_argument(
        "--stdio",
        metavar="DEST:DPORT",
        help="one tunnel on standard input and output (for ssh's ProxyCommand); "
        "the program exits when it ends",
    )
    options = parser.add_argument_group("forwarding options")
    options.add_argument("--gateway", metavar="HOST:PORT", help="the access-proxy VIP (default: the profile's)")
    options.add_argument(
        "--gateway-name",
        metavar="NAME",
        help="the name the gateway's certificate must carry, if not HOST",
    )
    options.add_argument(
        "--encryption",
        choices=("on", "off"),
        default="on",
        help="tls=1 (default) keeps tunnelled bytes inside TLS; off (tls=0) sends "
        "them in clear after the 101, for protocols with their own encryption "
        "(-L, -D, --stdio; rules say it per rule)",
    )
    options.add_argument(
        "--allow-remote-clients",
        action="store_true",
        help="allow listening on addresses other machines can reach",
    )
    options.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"time open tunnels get to finish on SIGINT/SIGTERM (default {DEFAULT_GRACE:g})",
    )
    options.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="SECONDS", help="TCP connection timeout (default 10)"
    )
    options.add_argument(
        "--retry-for",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a new connection waits for an unreachable gateway (default 30)",
    )
    options.add_argument("--no-telemetry", action="store_true", help="do not send the profile's telemetry")
    options.add_argument("-v", "--verbose", action="store_true", help="log tunnel openings and retries too")
    return parser


def parseArguments(argv: Sequence[str]) -> Settings:
    """
    Read and check the command line (files named in it are read).

    @raise UsageError: anything wrong; the message says what.
    """
    parser = _parser()
    try:
        arguments = parser.parse_args(list(argv))
    except SystemExit as e:
        # argparse printed its message (or the help) already.
        raise _ArgumentsExit(int(e.code or 0)) from None
    encrypted = arguments.encryption == "on"
    try:
        rules = [parseForwardSpec(spec, encrypted) for spec in arguments.forward]
        if arguments.rules is not None:
            try:
                with open(arguments.rules, encoding="utf-8") as f:
                    text = f.read(1 << 20)
            except OSError as e:
                raise UsageError(f"cannot read the rules file {arguments.rules}: {e.strerror}") from None
            except UnicodeDecodeError:
                raise UsageError(f"the rules file {arguments.rules} is not UTF-8 text") from None
            rules += parseRules(text, arguments.rules)
        socksAddresses = [parseListenAddress(spec) for spec in arguments.socks]
        for listen in [rule.listen for rule in rules] + socksAddresses:
            checkListenAddress(listen, arguments.allow_remote_clients)
        gateway = None if arguments.gateway is None else parseGateway(arguments.gateway)
    except RuleError as e:
        raise UsageError(str(e)) from None
    stdio = None
    if arguments.stdio is not None:
        try:
            host, port = parseHostPort(arguments.stdio)
        except ValueError as e:
            raise UsageError(f"--stdio: {e}") from None
        stdio = TunnelTarget(host, port, encrypted)
    if not rules and not socksAddresses and stdio is None:
        raise UsageError("nothing to forward: give -L, --rules, -D or --stdio")
    given = [arguments.cert, arguments.key, arguments.ca]
    if any(given) and not all(given):
        raise UsageError("--cert, --key and --ca go together")
    if all(given) and arguments.profile is not None:
        raise UsageError("give either --profile or --cert/--key/--ca, not both")
    for name in ("grace", "connect_timeout", "retry_for"):
        if getattr(arguments, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} cannot be negative")
    return Settings(
        rules=tuple(rules),
        socks=tuple(socksAddresses),
        stdio=stdio,
        gateway=gateway,
        gatewayName=arguments.gateway_name,
        encrypted=encrypted,
        grace=arguments.grace,
        connectTimeout=arguments.connect_timeout,
        retryFor=arguments.retry_for,
        verbose=arguments.verbose,
        telemetry=not arguments.no_telemetry,
        profile=arguments.profile,
        certificate=arguments.cert,
        key=arguments.key,
        ca=arguments.ca,
    )


class _ArgumentsExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def loadCredentials(settings: Settings) -> Credentials:
    """
    Read the device identity: the named (or default) profile, or
    C{--cert/--key/--ca}.  Blocks on files.

    @raise UsageError: missing or unusable; the message says what to do.
    """
    if settings.certificate is not None:
        from ztnagw.ems.keys import KeyMaterialError, readCertificateFile, readPrivateKeyFile

        assert settings.key is not None and settings.ca is not None
        try:
            certificate = readCertificateFile(settings.certificate, "device certificate")
            key = readPrivateKeyFile(settings.key, "device key")
        except KeyMaterialError as e:
            raise UsageError(str(e)) from None
        try:
            with open(settings.ca, "rb") as f:
                authorities = tuple(x509.load_pem_x509_certificates(f.read(1 << 20)))
        except OSError as e:
            raise UsageError(f"cannot read --ca {settings.ca}: {e.strerror}") from None
        except ValueError:
            raise UsageError(f"--ca {settings.ca} does not hold PEM certificates") from None
        return Credentials(certificate, key, authorities)
    from ztnagw.forwarder.profile import ProfileError, loadProfile, profileDirectory

    try:
        profile = loadProfile(profileDirectory(settings.profile))
    except ProfileError as e:
        raise UsageError(str(e)) from None
    return Credentials(profile.certificate, profile.privateKey, profile.caCertificates, profile)


def _defaultGateway(settings: Settings, credentials: Credentials) -> tuple[str, int] | None:
    if settings.gateway is not None:
        return settings.gateway
    profile = credentials.profile
    if profile is not None and profile.gatewayAddress is not None:
        host, port = profile.gatewayAddress
        return host, port
    return None


class _Openers:
    """
    One L{TunnelOpener} per gateway, sharing that gateway's backoff.
    """

    def __init__(self, reactor: Any, settings: Settings, credentials: Credentials) -> None:
        self._reactor = reactor
        self._settings = settings
        self._credentials = credentials
        self._default = _defaultGateway(settings, credentials)
        self._openers: dict[tuple[str, int], TunnelOpener] = {}

    def check(self, settings: Settings) -> None:
        """
        Refuse to start when a tunnel would have no gateway.

        @raise UsageError: no gateway for some rule.
        """
        needsDefault = settings.socks or settings.stdio or any(
            rule.gateway is None for rule in settings.rules
        )
        if needsDefault and self._default is None:
            raise UsageError("no gateway: give --gateway HOST:PORT (or enroll with a default gateway)")

    def __call__(self, gateway: tuple[str, int] | None) -> TunnelOpener:
        address = gateway or self._default
        assert address is not None
        opener = self._openers.get(address)
        if opener is None:
            host, port = address
            serverName = self._settings.gatewayName if gateway is None else None
            name = serverName or host
            opener = TunnelOpener(
                self._reactor,
                Gateway(host, port, serverName),
                self._credentials.creator(name),
                USER_AGENT.encode("ascii"),
                connectTimeout=self._settings.connectTimeout,
                retryFor=self._settings.retryFor,
                backoff=Backoff(),
            )
            self._openers[address] = opener
        return opener


class _Console:
    """
    Prints log events on standard error, one line each, with the time.
    """

    def __init__(self, stream: TextIO, verbose: bool, quiet: bool = False) -> None:
        """
        @param stream: where lines go.
        @param verbose: show debug lines too.
        @param quiet: show only warnings and errors (unless C{verbose}).
        """
        from twisted.logger import LogLevel

        self._stream = stream
        if verbose:
            self._minimum = LogLevel.debug
        elif quiet:
            self._minimum = LogLevel.warn
        else:
            self._minimum = LogLevel.info
        self._levels = list(LogLevel.iterconstants())

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        level = event.get("log_level")
        if level is None or self._levels.index(level) < self._levels.index(self._minimum):
            return
        namespace = event.get("log_namespace", "")
        if not (namespace.startswith("ztnagw") or level.name in ("warn", "error", "critical")):
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None and level.name in ("error", "critical"):
            text += f": {failure.getErrorMessage()}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("log_time", time.time())))
        self._stream.write(f"{stamp} ztnagw-forward: {text}\n")
        self._stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the forwarder until SIGINT/SIGTERM (or, with C{--stdio}, until the
    tunnel ends).

    @param argv: the arguments after the program name.
    @return: the exit status: 0 after a normal stop, 1 when the forwarder
        cannot run or the C{--stdio} tunnel could not be opened, 2 for a
        bad command line.
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        settings = parseArguments(argv)
        credentials = loadCredentials(settings)
    except _ArgumentsExit as e:
        return e.status
    except UsageError as e:
        sys.stderr.write(f"ztnagw-forward: {e}\n")
        return 2
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    openers = _Openers(reactor, settings, credentials)
    try:
        openers.check(settings)
    except UsageError as e:
        sys.stderr.write(f"ztnagw-forward: {e}\n")
        return 2
    # A --stdio forwarder writes on the terminal of the ssh that started
    # it: only what went wrong, unless asked for more.
    stdioOnly = settings.stdio is not None and not (settings.rules or settings.socks)
    globalLogBeginner.beginLoggingTo(
        [_Console(sys.stderr, settings.verbose, quiet=stdioOnly)], redirectStandardIO=False
    )
    forwarder = Forwarder(
        reactor,
        openers,
        settings.rules,
        settings.socks,
        socksEncrypted=settings.encrypted,
        grace=settings.grace,
    )
    # A --stdio forwarder lives for one connection (ssh starts one per
    # session): the agent, or a long-running forwarder, keeps the device
    # online.
    if settings.telemetry and credentials.profile is not None and not stdioOnly:
        _addTelemetry(forwarder, reactor, credentials.profile)
    try:
        forwarder.startService()
    except CannotListenError as e:
        sys.stderr.write(f"ztnagw-forward: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}\n")
        return 1
    status = [0]
    reactor.addSystemEventTrigger("before", "shutdown", forwarder.stopService)
    if settings.stdio is not None:
        _runStdio(reactor, forwarder, settings.stdio, status)
    reactor.run()
    return status[0]


def _addTelemetry(forwarder: Forwarder, reactor: Any, profile: Any) -> None:
    try:
        from ztnagw.forwarder.agent import TelemetryService
    except ImportError:
        _log.info("telemetry is not available in this build; the device may go offline")
        return
    TelemetryService(reactor, profile).setServiceParent(forwarder)


class _StdioEnd(RelayEnd):
    """
    The application's end of a C{--stdio} tunnel.  Pipes have no resets:
    the program at the other end (ssh) closing them, however abruptly, is
    how a session ends, so the loss is a clean one and the tunnel to the
    gateway is closed cleanly, not aborted.
    """

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        See L{RelayEnd.connectionLost}.
        """
        if not reason.check(ConnectionDone):
            reason = Failure(ConnectionDone(f"standard input and output closed ({reason.getErrorMessage()})"))
        super().connectionLost(reason)


class _StandardIO(StandardIO):  # type: ignore[misc, valid-type]
    """
    The standard I/O transport of a C{--stdio} tunnel: Twisted's
    C{StandardIO}, made to end like a connection.

    Twisted's C{StandardIO} reports the loss of the connection only when
    its write half closes while it is disconnecting.  A tunnel closes the
    halves one by one: the real server's end of stream closes our standard
    output first, then the relay closes the whole connection, and then
    C{StandardIO.loseConnection} only stops reading: the loss was never
    reported, the relay waited for it, and the forwarder never exited
    (ssh waited for it in turn).  It also has no C{abortConnection}, which
    the relay calls when a stop's grace period is over.
    """

    outputClosed = False

    def childConnectionLost(self, fd: str, reason: Failure) -> None:
        if fd == "write":
            self.outputClosed = True
        StandardIO.childConnectionLost(self, fd, reason)

    def loseConnection(self) -> None:
        if self.outputClosed and not self.disconnected:
            # Nothing is left to flush: the connection is over now.
            self.disconnecting = True
            self.connectionLost(Failure(ConnectionDone()))
            return
        StandardIO.loseConnection(self)

    def abortConnection(self) -> None:
        if not self.disconnected:
            self.disconnecting = True
            self.connectionLost(Failure(ConnectionAborted()))


def _runStdio(reactor: Any, forwarder: Forwarder, target: TunnelTarget, status: list[int]) -> None:
    end = _StdioEnd(CLIENT)
    _StandardIO(end, reactor=reactor)
    tunnel = forwarder.tunnel("stdio", end, target)

    def finished(_: None) -> None:
        if tunnel.failure is not None:
            status[0] = 1
        if reactor.running:
            reactor.stop()

    tunnel.done.addCallback(finished)

    def hungUp() -> None:
        # ssh ends its ProxyCommand with SIGHUP when the session is over:
        # close the tunnel cleanly (so the gateway logs a normal end, not a
        # reset) and stop, whatever happens, soon after.
        relay = tunnel.relay
        if relay is not None:
            relay.finish()
        else:
            tunnel.close("standard input and output were hung up")
        reactor.callLater(_HANGUP_GRACE, lambda: reactor.running and reactor.stop())

    signal.signal(signal.SIGHUP, lambda number, frame: reactor.callFromThread(hungUp))


#: Seconds the --stdio tunnel gets to close cleanly after SIGHUP.
_HANGUP_GRACE = 2.0

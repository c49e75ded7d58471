# -*- test-case-name: tests.test_workers_listen,tests.gateway.test_runtime -*-
"""
One VIP's TLS listener: the certificate chosen by SNI, the certificate
request of the virtual host the name stands for, and the HTTP server that
hands every request to the access proxy's handler.

The TLS side is L{ztnagw.tls.server.ServerConnectionCreator} with the one
L{DeviceCertificateVerifier<ztnagw.tls.server.DeviceCertificateVerifier>}
every listener shares; this module only says what it should present and
ask for: the VIP's first C{ssl-certificate} by default, with the VIP's
client-certificate settings; for each SNI name of L{SNITable} (virtual
hosts, further VIP certificates) that name's certificate and its virtual
host's C{client-cert}.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from cryptography import x509
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from ztnagw.config.certificates import CertificateMaterial
from ztnagw.config.model import Config, Vip
from ztnagw.gateway.context import AccessGate, VipSite
from ztnagw.gateway.matching import AccessProxyMatcher, SNITable
from ztnagw.http.server import HTTPServerFactory
from ztnagw.tls.listener import listenTLS
from ztnagw.tls.posture import TLSVersion
from ztnagw.tls.server import (
    DeviceCertificateVerifier,
    ServerCertificate,
    ServerConnectionCreator,
    SNIEntry,
)

__all__ = ["VipService", "certificateDNSNames", "serverConnectionCreator", "vipSite"]

_log = Logger()


def certificateDNSNames(certificate: x509.Certificate) -> list[str]:
    """
    The DNS names a certificate's subject alternative names hold.
    """
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value.get_values_for_type(x509.DNSName))


def vipSite(config: Config, vip: Vip, certificates: Mapping[str, CertificateMaterial]) -> VipSite:
    """
    What C{vip} serves: its access proxy, the matching rules and the SNI
    names (further VIP certificates answer for their own DNS names).
    """
    accessProxy = config.accessProxyOf(vip.name)
    matcher = AccessProxyMatcher(config, accessProxy)

    def names(certificate: str) -> list[str]:
        material = certificates.get(certificate)
        return certificateDNSNames(material.certificate) if material is not None else []

    return VipSite(vip, accessProxy, matcher, SNITable.forVip(matcher, vip.sslCertificate, names))


def _serverCertificate(material: CertificateMaterial) -> ServerCertificate:
    return ServerCertificate(material.certificate, material.key, material.chain)  # type: ignore[arg-type]


def serverConnectionCreator(
    site: VipSite,
    certificates: Mapping[str, CertificateMaterial],
    verifier: DeviceCertificateVerifier,
    gate: AccessGate,
) -> ServerConnectionCreator:
    """
    The TLS server side of C{site}'s VIP.

    @param certificates: the loaded certificates, by C{vpn certificate
        local} name (L{ztnagw.startup.PreparedGateway.certificates}).
    @param verifier: the shared verifier.
    @param gate: gives each virtual host's client-certificate settings.
    @raise ztnagw.tls.posture.TLSConfigurationError: a certificate that
        does not fit its key, or inconsistent TLS versions.
    """
    vip = site.vip
    entries = [
        SNIEntry(
            name.pattern,
            _serverCertificate(certificates[name.certificate]),
            gate.clientCertificateSettings(vip.name, name.virtualHost).clientCert,
        )
        for name in site.sni.names
    ]
    return ServerConnectionCreator(
        _serverCertificate(certificates[vip.sslCertificate[0]]),
        verifier,
        entries,
        clientCertificate=gate.clientCertificateSettings(vip.name, None).clientCert,
        minimumVersion=TLSVersion.fromConfig(vip.sslMinVersion),
        maximumVersion=TLSVersion.fromConfig(vip.sslMaxVersion),
    )


class VipService(Service):
    """
    Listens on one VIP's C{extip}:C{extport} while the gateway runs.

    @ivar port: the listening port, once started.
    """

    def __init__(
        self,
        reactor: Any,
        site: VipSite,
        creator: ServerConnectionCreator,
        factory: HTTPServerFactory,
        listen: Callable[..., IListeningPort] = listenTLS,
    ) -> None:
        """
        @param reactor: the reactor to listen with.
        @param site: what the VIP serves.
        @param creator: its TLS server side.
        @param factory: its HTTP server factory.
        @param listen: how to listen (L{listenTLS}).
        """
        self._reactor = reactor
        self.site = site
        self._creator = creator
        self._factory = factory
        self._listen = listen
        self.port: IListeningPort | None = None
        self.setName(f"vip-{site.vip.name}")

    def privilegedStartService(self) -> None:
        """
        Listen, while the process may still bind privileged ports: twistd
        calls this before it drops privileges (C{--uid}/C{--gid}), so a
        VIP on a port below 1024 works without running the gateway as
        root.  A port that cannot be bound stops the daemon with the
        reason (logged here with the VIP's name).
        """
        Service.privilegedStartService(self)
        self._startListening()

    def startService(self) -> None:
        """
        Listen, unless L{privilegedStartService} already did.
        """
        if self.port is None:
            self._startListening()
        Service.startService(self)

    def _startListening(self) -> None:
        vip = self.site.vip
        try:
            self.port = self._listen(
                self._reactor, vip.extport, str(vip.extip), self._creator, self._factory
            )
        except Exception as e:
            _log.error(
                "VIP {vip} cannot listen on {extip}:{extport}: {error}",
                vip=vip.name,
                extip=vip.extip,
                extport=vip.extport,
                error=e,
            )
            raise
        _log.info(
            "VIP {vip} listening on {extip}:{extport} (access proxy {accessProxy})",
            vip=vip.name,
            extip=vip.extip,
            extport=self.port.getHost().port,
            accessProxy=self.site.accessProxy.name if self.site.accessProxy else "none",
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop listening; open connections are left to finish.
        """
        Service.stopService(self)
        port, self.port = self.port, None
        if port is None:
            return maybeDeferred(lambda: None)
        return maybeDeferred(port.stopListening)

# -*- test-case-name: tests.gateway.test_runtime,tests.test_workers,tests.test_tap -*-
"""
Everything the gateway must have before it may listen: the work done once,
synchronously, before the reactor runs.

A gateway that starts half-configured is worse than one that refuses to
start, so every step that can fail for a reason the operator must fix runs
here, in order, and stops at the first failure with one clear message:

  1. each enabled EMS has its certificate authority (created at first
     start, as an EMS creates its ZTNA root CA at installation);
  2. each certificate a VIP or virtual host presents is loaded, and those
     with C{auto-generate enable} are created first if their files do not
     exist yet (issued by the first enabled EMS's CA, so that enrolled
     forwarders trust them);
  3. the trust anchors for real servers are loaded;
  4. each enabled EMS's endpoint registry opens;
  5. each enabled EMS's listener has its certificate (issued by the EMS CA
     for the C{server} name, its key kept across renewals so that the pin
     forwarders enroll with stays valid).

This blocks on files, key generation and SQLite: it must run before the
reactor starts (C{makeService}) or in a thread, never in the reactor
thread.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Mapping

from attrs import field, frozen
from cryptography import x509

from ztnagw.config.certificates import (
    CertificateMaterial,
    CertificateProblem,
    isPendingGeneration,
)
from ztnagw.config.model import Config
from ztnagw.ems.ca import (
    CertificateAuthorityError,
    EmsCertificateAuthority,
    certificateAuthorityFromLocalCertificate,
    ensureCertificateAuthority,
)
from ztnagw.ems.listener import (
    ListenerCertificate,
    ListenerCertificateError,
    ensureListenerCertificate,
)
from ztnagw.ems.signing import LocalCertificateError, ensureLocalCertificate
from ztnagw.registry import openStore
from ztnagw.registry.interfaces import RegistryUnavailable

_HOST_NAME = re.compile(r"\A(\*\.)?([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\Z")


class StartupFailed(Exception):
    """
    The gateway cannot start; the message says why and what to do.
    """


@frozen
class PreparedGateway:
    """
    A configuration with everything it names ready for use.

    @ivar config: the configuration.
    @ivar authorities: the certificate authority of each enabled EMS, by
        C{fctems} id.
    @ivar certificates: the certificates (with keys) VIPs and virtual hosts
        present, by C{vpn certificate local} name.
    @ivar realServerTrust: the trust anchors of C{vpn certificate ca}, by
        name, for verifying real servers.
    @ivar emsListeners: the certificate and bind address of each enabled
        EMS's listener, by C{fctems} id.
    """

    config: Config
    authorities: Mapping[int, EmsCertificateAuthority]
    certificates: Mapping[str, CertificateMaterial]
    realServerTrust: Mapping[str, tuple[x509.Certificate, ...]]
    emsListeners: Mapping[int, ListenerCertificate] = field(factory=dict)


def prepare(config: Config) -> PreparedGateway:
    """
    Make the gateway described by C{config} ready to start.  Blocks.

    @raise StartupFailed: something the operator must fix.
    """
    authorities = _authorities(config)
    certificates = _certificates(config, authorities)
    trust: dict[str, tuple[x509.Certificate, ...]] = {}
    for name in config.caCertificates:
        try:
            trust[name] = config.caCertificate(name)
        except CertificateProblem as e:
            raise StartupFailed(f"vpn certificate ca {name!r}: {e.message}")
    _checkRegistries(config)
    listeners = {}
    for ems in enabledEms(config):
        try:
            listeners[ems.id] = ensureListenerCertificate(
                config.systemGlobal.stateDir,
                ems.id,
                ems.server,
                authorities[ems.id],
                config.systemGlobal.hostname or "",
            )
        except ListenerCertificateError as e:
            raise StartupFailed(f"fctems {ems.id}: EMS listener: {e}")
    return PreparedGateway(
        config=config,
        authorities=authorities,
        certificates=certificates,
        realServerTrust=trust,
        emsListeners=listeners,
    )


def enabledEms(config: Config) -> list:
    """
    The enabled C{fctems} entries, by id.
    """
    return [ems for ems in config.emsConnectors.values() if ems.status]


def _authorities(config: Config) -> dict[int, EmsCertificateAuthority]:
    authorities = {}
    for ems in enabledEms(config):
        try:
            if ems.caCertificate is not None:
                material = config.localCertificate(ems.caCertificate)
                authorities[ems.id] = certificateAuthorityFromLocalCertificate(
                    ems.caCertificate, material.certificate, material.key
                )
            else:
                authorities[ems.id] = ensureCertificateAuthority(
                    config.systemGlobal.stateDir, ems, config.systemGlobal.hostname
                )
        except (CertificateAuthorityError, CertificateProblem, OSError) as e:
            raise StartupFailed(f"fctems {ems.id}: EMS certificate authority: {e}")
    return authorities


def _presentedCertificateNames(config: Config) -> dict[str, tuple[list[str], list[str]]]:
    # For each certificate a listener presents: the host names and
    # addresses it must be valid for, should it have to be generated.
    names: dict[str, tuple[list[str], list[str]]] = {}
    for vip in config.vips.values():
        for certificate in vip.sslCertificate:
            dns, ips = names.setdefault(certificate, ([], []))
            if vip.extip is not None and vip.extip != ipaddress.IPv4Address(0):
                if str(vip.extip) not in ips:
                    ips.append(str(vip.extip))
    for virtualHost in config.virtualHosts.values():
        for certificate in virtualHost.sslCertificate:
            dns, ips = names.setdefault(certificate, ([], []))
            host = virtualHost.host or ""
            if _HOST_NAME.match(host) and host not in dns:
                dns.append(host)
    return names


def _certificates(
    config: Config, authorities: Mapping[int, EmsCertificateAuthority]
) -> dict[str, CertificateMaterial]:
    loaded = {}
    for name, (dnsNames, ipAddresses) in _presentedCertificateNames(config).items():
        entry = config.localCertificates[name]
        if entry.autoGenerate and isPendingGeneration(entry):
            if not authorities:
                raise StartupFailed(
                    f"vpn certificate local {name!r} has auto-generate enable, "
                    "but no fctems entry is enabled to issue it; enable one or "
                    "give the certificate and key"
                )
            issuer = authorities[min(authorities)]
            try:
                ensureLocalCertificate(
                    entry.certificateFile,
                    entry.privateKeyFile,
                    issuer,
                    dnsNames or [config.systemGlobal.hostname],
                    ipAddresses,
                )
            except (LocalCertificateError, CertificateAuthorityError, ValueError, OSError) as e:
                raise StartupFailed(f"vpn certificate local {name!r}: {e}")
        try:
            loaded[name] = config.localCertificate(name)
        except CertificateProblem as e:
            raise StartupFailed(f"vpn certificate local {name!r}: {e.message}")
    return loaded


def _checkRegistries(config: Config) -> None:
    for ems in enabledEms(config):
        try:
            store = openStore(ems.registry, config.systemGlobal.stateDir, ems.id)
        except RegistryUnavailable as e:
            raise StartupFailed(f"fctems {ems.id}: endpoint registry: {e}")
        store.close()

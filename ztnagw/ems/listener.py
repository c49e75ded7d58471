# -*- test-case-name: tests.ems.test_listener -*-
"""
The EMS listener's own certificate, and the pin users enroll with.

A device enrolling for the first time knows nothing about the EMS but what
its administrator gave it: the EMS CA certificate (C{--ca-file}) or the
SHA-256 pin of the EMS listener's public key (C{--pin}).  So the listener
presents a certificate that works with both: issued by the EMS's own CA
for the C{fctems} C{server} name or address, with a key that stays the
same for the life of the state directory, so that a pin printed once (by
C{ztnagw token create}) stays valid across certificate renewals and CA
rotations.

The files live next to the CA, in C{<state-dir>/ems<id>/}:
C{listener.key} (mode 0600) and C{listener.crt}.  L{ensureListenerCertificate}
makes them at the first start and renews the certificate, with the same
key, whenever it no longer fits: issued by another CA (after a rotation),
not naming the current C{server}, or close to its end.

Everything here blocks on files and signing: the daemon calls it before the
reactor runs (L{ztnagw.startup}), the admin command directly.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket

from attrs import field, frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from twisted.logger import Logger

from ztnagw.ems.ca import EmsCertificateAuthority, authorityFiles
from ztnagw.ems.keys import (
    KeyMaterialError,
    PrivateKey,
    certificatePem,
    fingerprint,
    keyMatchesCertificate,
    newPrivateKey,
    privateKeyPem,
    readCertificateFile,
    readPrivateKeyFile,
)
from ztnagw.ems.signing import RENEWAL_WARNING, issueServerCertificate
from ztnagw.keyfiles import writePrivateFile, writePublicFile
from ztnagw.tls.client import formatPin, spkiFingerprint

__all__ = [
    "ListenerCertificate",
    "ListenerCertificateError",
    "emsUrl",
    "ensureListenerCertificate",
    "listenerFiles",
    "readListenerPin",
]

_log = Logger()

_BACKDATE = datetime.timedelta(minutes=5)


class ListenerCertificateError(KeyMaterialError):
    """
    The EMS listener's certificate or key cannot be made or used; the
    message says which file and what to do.
    """


@frozen
class ListenerCertificate:
    """
    What the EMS listener presents, and where it binds.

    @ivar certificate: its certificate.
    @ivar privateKey: its key; takes no part in C{repr} or equality.
    @ivar bindAddress: the address to listen on (the C{server} address, or
        the address its name resolves to).
    """

    certificate: x509.Certificate
    privateKey: PrivateKey = field(repr=False, eq=False)
    bindAddress: str

    @property
    def pin(self) -> str:
        """
        The pin a forwarder enrolls with (C{sha256:<hex>}).
        """
        return formatPin(spkiFingerprint(self.certificate))


def listenerFiles(stateDir: str, emsId: int) -> tuple[str, str]:
    """
    The listener certificate and key paths of EMS C{emsId}.
    """
    directory = authorityFiles(stateDir, emsId).directory
    return os.path.join(directory, "listener.crt"), os.path.join(directory, "listener.key")


def emsUrl(server: str, port: int) -> str:
    """
    The URL a forwarder enrolls with: C{https://<server>:<port>}.
    """
    host = f"[{server}]" if ":" in server else server
    return f"https://{host}:{port}"


def _isAddress(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _names(server: str, hostname: str) -> tuple[list[str], list[str]]:
    if _isAddress(server):
        if ipaddress.ip_address(server).is_unspecified:
            # Listening everywhere: the certificate can only name the host.
            return ([hostname] if hostname else ["localhost"]), []
        return [], [server]
    return [server.rstrip(".").lower()], []


def _bindAddress(server: str) -> str:
    if _isAddress(server):
        return server
    try:
        answers = socket.getaddrinfo(server, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ListenerCertificateError(
            f"the EMS server name {server!r} does not resolve ({e}); give an "
            "address, or a name this host resolves to one of its own addresses"
        ) from None
    return str(answers[0][4][0])


def _fits(
    certificate: x509.Certificate,
    ca: EmsCertificateAuthority,
    dnsNames: list[str],
    ipAddresses: list[str],
    now: datetime.datetime,
) -> str | None:
    """
    Why C{certificate} must be renewed, or C{None} if it may stay.
    """
    try:
        certificate.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return f"it was not issued by the current EMS CA ({ca.subject})"
    if certificate.not_valid_after_utc - RENEWAL_WARNING <= now:
        return "it expires soon"
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it names no host"
    presentDns = {n.lower() for n in names.get_values_for_type(x509.DNSName)}
    presentIps = {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    for name in dnsNames:
        if name not in presentDns:
            return f"it does not name {name}"
    for address in ipAddresses:
        if str(ipaddress.ip_address(address)) not in presentIps:
            return f"it does not name {address}"
    return None


def ensureListenerCertificate(
    stateDir: str,
    emsId: int,
    server: str,
    ca: EmsCertificateAuthority,
    hostname: str = "",
    now: datetime.datetime | None = None,
) -> ListenerCertificate:
    """
    Make sure EMS C{emsId}'s listener has a key and a current certificate
    (see the module docstring), and say where to bind.

    @param server: the C{fctems} C{server} (address or name).
    @param ca: the EMS CA.
    @param hostname: the gateway's host name, named by the certificate when
        the listener binds every address (C{server 0.0.0.0}).
    @param now: the current time; the clock by default.
    @raise ListenerCertificateError: the key on disk cannot be used, the
        server name does not resolve, or the files cannot be written.
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    certificatePath, keyPath = listenerFiles(stateDir, emsId)
    dnsNames, ipAddresses = _names(server, hostname)
    bindAddress = _bindAddress(server)
    try:
        if os.path.lexists(keyPath):
            key = readPrivateKeyFile(keyPath, f"EMS {emsId} listener key")
        else:
            key = newPrivateKey()
            writePrivateFile(keyPath, privateKeyPem(key))
            if os.path.lexists(certificatePath):
                os.unlink(certificatePath)
        reason: str | None = "there is none"
        if os.path.lexists(certificatePath):
            certificate = readCertificateFile(certificatePath, f"EMS {emsId} listener certificate")
            if not keyMatchesCertificate(key, certificate):
                reason = "it does not match the key"
            else:
                reason = _fits(certificate, ca, dnsNames, ipAddresses, now)
        if reason is None:
            return ListenerCertificate(certificate, key, bindAddress)
        certificate = issueServerCertificate(
            ca, key.public_key(), dnsNames, ipAddresses, notBefore=now - _BACKDATE
        )
        writePublicFile(certificatePath, certificatePem(certificate))
    except ListenerCertificateError:
        raise
    except KeyMaterialError as e:
        raise ListenerCertificateError(str(e)) from None
    except OSError as e:
        raise ListenerCertificateError(
            f"cannot write the EMS {emsId} listener certificate in "
            f"{os.path.dirname(certificatePath)}: {e.strerror or e}"
        ) from None
    except ValueError as e:
        raise ListenerCertificateError(f"EMS {emsId} listener certificate: {e}") from None
    result = ListenerCertificate(certificate, key, bindAddress)
    _log.info(
        "Issued the EMS {emsId} listener certificate for {names} ({why}); SHA-256 "
        "{fingerprint}; forwarders enroll with --pin {pin}",
        emsId=emsId,
        names=", ".join(dnsNames + ipAddresses),
        why=f"the previous one: {reason}" if reason != "there is none" else "first start",
        fingerprint=fingerprint(certificate),
        pin=result.pin,
    )
    return result


def readListenerPin(stateDir: str, emsId: int) -> str | None:
    """
    The pin of EMS C{emsId}'s listener, from its certificate on disk, or
    C{None} if it has none yet (the gateway makes it at its first start).
    """
    certificatePath, _ = listenerFiles(stateDir, emsId)
    if not os.path.exists(certificatePath):
        return None
    try:
        certificate = readCertificateFile(certificatePath, "EMS listener certificate")
    except KeyMaterialError:
        return None
    return formatPin(spkiFingerprint(certificate))

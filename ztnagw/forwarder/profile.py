# -*- test-case-name: tests.forwarder.test_profile -*-
"""
The device profile: everything a forwarder knows about its device, in one
directory.

Enrollment (L{ztnagw.forwarder.enroll}) leaves the device's identity here;
the agent and the TCP forwarder read it back with L{loadProfile} and reach
the EMS and the gateways with it.  One directory per device identity, so
that one user can hold several (a lab EMS and the production one):

  - C{device.key}: the device's private key (PEM, mode 0600, written
    through L{ztnagw.keyfiles}, refused if anyone else can read it);
  - C{device.crt}: the device certificate the EMS issued (subject
    C{CN=<UID>});
  - C{ca.crt}: the EMS CA certificates (the current one, and the one a
    rotation replaced while it is still trusted): what the gateways' and
    the EMS's server certificates are checked against;
  - C{profile.json}: the UID, the certificate serial, the EMS URL (and the
    pin the user gave at enrollment, if any) and the default gateway.

Profiles live in C{$XDG_CONFIG_HOME/ztnagw-forward/<name>} (C{~/.config}
when the variable is unset); C{default} is the name used when none is
given.  A name with a C{/} in it is a directory path instead.

Reading and writing profiles blocks on files: commands do it before the
reactor runs (or in a thread).
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, Mapping
from urllib.parse import urlsplit

from attrs import field, frozen
from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from ztnagw.ems.keys import (
    KeyMaterialError,
    PrivateKey,
    certificatePem,
    keyMatchesCertificate,
    privateKeyPem,
    readCertificateFile,
    readPrivateKeyFile,
)
from ztnagw.keyfiles import writePrivateFile, writePublicFile
from ztnagw.registry.record import canonicalSerial, isUid
from ztnagw.tls.client import (
    deviceClientCreator,
    formatPin,
    parsePin,
    pinnedClientCreator,
)
from ztnagw.tunnel import wire

__all__ = [
    "CA_FILE",
    "CERTIFICATE_FILE",
    "DEFAULT_PROFILE",
    "KEY_FILE",
    "METADATA_FILE",
    "Profile",
    "ProfileError",
    "defaultProfileRoot",
    "loadProfile",
    "parseEmsUrl",
    "parseHostPort",
    "profileDirectory",
    "storeProfile",
]

#: The profile used when none is named.
DEFAULT_PROFILE = "default"

KEY_FILE = "device.key"
CERTIFICATE_FILE = "device.crt"
CA_FILE = "ca.crt"
METADATA_FILE = "profile.json"

#: The version of C{profile.json}'s layout.
_FORMAT = 1

_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")

#: Largest C{profile.json} or C{ca.crt} read.
_MAX_FILE = 256 * 1024


class ProfileError(Exception):
    """
    A profile cannot be found, read or written; the message says which
    file, why, and what to do.
    """


def defaultProfileRoot(environ: Mapping[str, str] | None = None) -> str:
    """
    The directory holding named profiles: C{$XDG_CONFIG_HOME/ztnagw-forward},
    else C{~/.config/ztnagw-forward}.
    """
    if environ is None:
        environ = os.environ
    base = environ.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):
        # The XDG specification says to ignore a relative value.
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return os.path.join(base, "ztnagw-forward")


def profileDirectory(
    nameOrPath: str | None, environ: Mapping[str, str] | None = None
) -> str:
    """
    The directory of a profile given by name (C{lab}) or by path (anything
    with a C{/}, such as C{./lab} or C{/etc/ztnagw-forward/kiosk}).

    @param nameOrPath: the C{--profile} argument, or C{None} for
        L{DEFAULT_PROFILE}.
    @raise ProfileError: a name with characters a directory name should not
        have.
    """
    if nameOrPath is None:
        nameOrPath = DEFAULT_PROFILE
    if "/" in nameOrPath or nameOrPath in (".", ".."):
        return os.path.abspath(nameOrPath)
    if not _NAME.match(nameOrPath):
        raise ProfileError(
            f"{nameOrPath!r} is not a profile name: use letters, digits, '_', "
            "'.' and '-' (or give a directory path containing '/')"
        )
    return os.path.join(defaultProfileRoot(environ), nameOrPath)


def parseHostPort(text: str, defaultPort: int | None = None) -> tuple[str, int]:
    """
    Read C{HOST:PORT} (C{[v6]:PORT} for IPv6 addresses) by the rules of
    L{ztnagw.tunnel.wire.parseHostPort}, the ones every address of the
    forwarder follows (C{-L}, C{--stdio}, rules files), with an optional
    default port (C{--gateway gw.example.com} means port 443).

    @param defaultPort: the port when C{text} gives none; C{None} makes the
        port mandatory.
    @raise ValueError: not such a form; the message shows it.
    """
    hasPort = text.rpartition("]")[2].startswith(":") if text.startswith("[") else text.count(":") == 1
    if defaultPort is not None and not hasPort:
        return wire.parseHost(text), defaultPort
    return wire.parseHostPort(text)


def parseEmsUrl(text: str) -> tuple[str, int]:
    """
    Read an EMS URL, C{https://HOST[:PORT]} (port 443 by default), as the
    host and port to connect to.

    @raise ValueError: not an https URL of a host and port alone.
    """
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid URL: {e}") from None
    if parts.scheme.lower() != "https":
        raise ValueError(f"{text!r}: the EMS URL must start with https://")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r}: the EMS URL must not hold a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r}: give the EMS as https://HOST:PORT, without a path")
    host = parts.hostname
    if not host:
        raise ValueError(f"{text!r} names no host")
    return host, 443 if port is None else port


@frozen
class Profile:
    """
    A device identity, as loaded from its directory.

    @ivar directory: where it lives.
    @ivar uid: the FortiClient UID the EMS assigned (the certificate's
        subject).
    @ivar certSerial: the certificate's serial number, as the registry
        spells it.
    @ivar emsUrl: where the EMS was reached at enrollment
        (C{https://HOST:PORT}); telemetry goes there.
    @ivar emsPin: the public key pin the user gave at enrollment, or
        C{None} if the EMS was checked against a CA file.
    @ivar gateway: the default gateway (C{HOST:PORT}) for the forwarder, or
        C{None}.
    @ivar certificate: the device certificate.
    @ivar privateKey: its key; takes no part in C{repr} or equality.
    @ivar caCertificates: the EMS CA certificates the device trusts.
    @ivar enrolledAt: when the profile was written (ISO 8601, UTC), if
        known.
    """

    directory: str
    uid: str
    certSerial: str
    emsUrl: str
    emsPin: bytes | None
    gateway: str | None
    certificate: x509.Certificate
    privateKey: PrivateKey = field(repr=False, eq=False)
    caCertificates: tuple[x509.Certificate, ...]
    enrolledAt: str | None = None

    @property
    def emsAddress(self) -> tuple[str, int]:
        """
        The EMS's host and port.
        """
        return parseEmsUrl(self.emsUrl)

    @property
    def gatewayAddress(self) -> tuple[str, int] | None:
        """
        The default gateway's host and port, if the profile has one.
        """
        if self.gateway is None:
            return None
        return parseHostPort(self.gateway)

    def clientCreator(self, host: str) -> IOpenSSLClientConnectionCreator:
        """
        How to reach gateway C{host} with this device's identity: present
        the device certificate, accept only a server certificate from the
        profile's CAs that names C{host} (see
        L{ztnagw.tls.client.deviceClientCreator}).

        @param host: the gateway's name or address, as the user gave it.
        """
        return deviceClientCreator(
            host, self.caCertificates, self.certificate, self.privateKey
        )

    def emsClientCreator(self) -> IOpenSSLClientConnectionCreator:
        """
        How to reach the EMS with this device's identity: by the pin given
        at enrollment if there was one (the user checked exactly that key),
        else like a gateway (L{clientCreator}).
        """
        host, _ = self.emsAddress
        if self.emsPin is not None:
            return pinnedClientCreator(host, self.emsPin, self.certificate, self.privateKey)
        return self.clientCreator(host)


def storeProfile(
    directory: str,
    privateKey: PrivateKey,
    certificate: x509.Certificate,
    caCertificates: tuple[x509.Certificate, ...],
    emsUrl: str,
    emsPin: bytes | None,
    gateway: str | None,
    enrolledAt: str,
) -> Profile:
    """
    Write a profile (creating its directory, mode 0700), replacing any
    profile there.

    The key goes first (mode 0600 from its first byte), then the
    certificates, then C{profile.json}; each file is replaced atomically.
    A crash in between leaves a key that does not match the certificate,
    which L{loadProfile} refuses with the advice to enroll again.

    @return: the profile as written.
    @raise ProfileError: the files cannot be written, or the certificate is
        not a device certificate for C{privateKey}.
    """
    uid = _certificateUid(certificate)
    if uid is None:
        raise ProfileError("the certificate's subject is not CN=<UID>")
    if not keyMatchesCertificate(privateKey, certificate):
        raise ProfileError("the certificate does not certify the device key")
    if not caCertificates:
        raise ProfileError("a profile needs the EMS CA certificate")
    serial = canonicalSerial(certificate.serial_number)
    metadata = {
        "format": _FORMAT,
        "uid": uid,
        "certSerial": serial,
        "ems": emsUrl,
        "emsPin": None if emsPin is None else formatPin(emsPin),
        "gateway": gateway,
        "enrolledAt": enrolledAt,
    }
    try:
        _makeDirectory(directory)
        writePrivateFile(os.path.join(directory, KEY_FILE), privateKeyPem(privateKey))
        writePublicFile(os.path.join(directory, CERTIFICATE_FILE), certificatePem(certificate))
        writePublicFile(
            os.path.join(directory, CA_FILE),
            b"".join(certificatePem(ca) for ca in caCertificates),
        )
        writePublicFile(
            os.path.join(directory, METADATA_FILE),
            json.dumps(metadata, indent=2).encode("utf-8") + b"\n",
        )
    except OSError as e:
        raise ProfileError(
            f"cannot write the profile in {directory}: {e.strerror or e}"
        ) from None
    return Profile(
        directory=directory,
        uid=uid,
        certSerial=serial,
        emsUrl=emsUrl,
        emsPin=emsPin,
        gateway=gateway,
        certificate=certificate,
        privateKey=privateKey,
        caCertificates=tuple(caCertificates),
        enrolledAt=enrolledAt,
    )


def _makeDirectory(directory: str) -> None:
    parent = os.path.dirname(directory)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ProfileError(f"{directory} is not a directory")
    if info.st_mode & 0o022:
        raise ProfileError(
            f"{directory} is writable by other users; run: chmod go-w {directory}"
        )


def _certificateUid(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if len(names) != 1 or not isinstance(names[0].value, str):
        return None
    return names[0].value if isUid(names[0].value) else None


def _readSmall(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        raise ProfileError(f"{what} {path} is missing") from None
    except OSError as e:
        raise ProfileError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > _MAX_FILE:
        raise ProfileError(f"{what} {path} is too large to be one")
    return data


def _metadata(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, METADATA_FILE)
    data = _readSmall(path, "the profile description")
    try:
        metadata = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ProfileError(f"{path} is not valid JSON; enroll again") from None
    if not isinstance(metadata, dict):
        raise ProfileError(f"{path} does not describe a profile; enroll again")
    if metadata.get("format") != _FORMAT:
        raise ProfileError(
            f"{path} has profile format {metadata.get('format')!r}; this "
            f"ztnagw-forward reads format {_FORMAT}"
        )
    for name in ("uid", "certSerial", "ems"):
        if not isinstance(metadata.get(name), str):
            raise ProfileError(f"{path} has no valid {name!r}; enroll again")
    for name in ("emsPin", "gateway", "enrolledAt"):
        if metadata.get(name) is not None and not isinstance(metadata[name], str):
            raise ProfileError(f"{path}: {name!r} must be text")
    return metadata


def loadProfile(directory: str) -> Profile:
    """
    Load and check the profile in C{directory}.

    The key must be readable by its owner only and belong to the
    certificate; the certificate must name the profile's UID and serial;
    the CA file must hold at least one certificate.

    @raise ProfileError: the profile is missing (the message says to
        enroll), unreadable, or fails a check.
    """
    if not os.path.isdir(directory):
        raise ProfileError(
            f"no profile in {directory}; enroll first: ztnagw-forward enroll "
            "--ems https://HOST:PORT --token TOKEN --pin PIN"
        )
    metadata = _metadata(directory)
    uid, serial = metadata["uid"], metadata["certSerial"]
    try:
        parseEmsUrl(metadata["ems"])
        pin = None if metadata.get("emsPin") is None else parsePin(metadata["emsPin"])
        if metadata.get("gateway") is not None:
            parseHostPort(metadata["gateway"])
    except ValueError as e:
        raise ProfileError(f"{os.path.join(directory, METADATA_FILE)}: {e}") from None
    keyPath = os.path.join(directory, KEY_FILE)
    certificatePath = os.path.join(directory, CERTIFICATE_FILE)
    try:
        key = readPrivateKeyFile(keyPath, "device key")
        certificate = readCertificateFile(certificatePath, "device certificate")
    except KeyMaterialError as e:
        raise ProfileError(str(e)) from None
    if not keyMatchesCertificate(key, certificate):
        raise ProfileError(
            f"the device key {keyPath} does not belong to the certificate "
            f"{certificatePath} (an enrollment was interrupted); enroll again"
        )
    if _certificateUid(certificate) != uid:
        raise ProfileError(
            f"the device certificate {certificatePath} does not name UID {uid}; "
            "enroll again"
        )
    if canonicalSerial(certificate.serial_number) != serial:
        raise ProfileError(
            f"the device certificate {certificatePath} has serial "
            f"{canonicalSerial(certificate.serial_number)}, not {serial}; enroll again"
        )
    caPath = os.path.join(directory, CA_FILE)
    try:
        authorities = tuple(x509.load_pem_x509_certificates(_readSmall(caPath, "the CA file")))
    except ValueError:
        raise ProfileError(f"{caPath} does not hold PEM certificates; enroll again") from None
    return Profile(
        directory=directory,
        uid=uid,
        certSerial=serial,
        emsUrl=metadata["ems"],
        emsPin=pin,
        gateway=metadata.get("gateway"),
        certificate=certificate,
        privateKey=key,
        caCertificates=authorities,
        enrolledAt=metadata.get("enrolledAt"),
    )

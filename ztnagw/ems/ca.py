# -*- test-case-name: tests.ems.test_ca -*-
"""
The EMS certificate authority: the key every device certificate hangs on.

The gateway admits a device only if its certificate was signed by this CA
(and the registry agrees about its UID and serial), so the CA key is the
most valuable secret ztnagw holds.  This module creates it, stores it in
the state directory, loads it back with every check that can fail closed,
and rotates it.

Each C{config endpoint-control fctems} entry has its own CA, kept in
C{<state-dir>/ems<id>/}:

  - C{ca.crt}: the certificate (mode 0644).
  - C{ca.key}: the private key (mode 0600, unencrypted PKCS#8 PEM).
  - C{previous/ca.crt}, C{previous/ca.key}: the CA replaced by the last
    rotation, still trusted (never used to sign) until it is retired.

An entry that sets C{ca-certificate} uses the operator's own CA from
C{config vpn certificate local} instead
(L{certificateAuthorityFromLocalCertificate}).

The CA certificate is self-signed, EC P-256 (see
L{ztnagw.ems.keys.newPrivateKey} for why), valid ten years, and may sign
only end-entity certificates: C{pathlen:0}, because devices are issued
certificates directly, and an intermediate CA presented by a client must
never be accepted.

Every function here blocks on files and key generation: the daemon calls
them before the reactor runs, the admin command calls them directly.
"""

from __future__ import annotations

import datetime
import os
import stat
from typing import TYPE_CHECKING

from attrs import evolve, field, frozen
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import NameOID
from twisted.logger import Logger

from ztnagw.ems.identifiers import newSerial
from ztnagw.ems.keys import (
    KeyMaterialError,
    PrivateKey,
    certificatePem,
    describeKey,
    fingerprint,
    keyMatchesCertificate,
    newPrivateKey,
    privateKeyPem,
    publicKeyProblem,
    readCertificateFile,
    readPrivateKeyFile,
    signatureHash,
)
from ztnagw.keyfiles import privateFileProblem, writePrivateFile, writePublicFile

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.config.model import EmsConnector

#: How long a new EMS CA is valid.
CA_VALIDITY = datetime.timedelta(days=3650)

#: How far a new CA's validity starts in the past, so that a device whose
#: clock runs a little slow does not see a CA from the future.
CA_BACKDATE = datetime.timedelta(hours=1)

#: Longest value X.509 allows in a common name or organisation (RFC 5280
#: upper bounds).
_MAX_NAME_LENGTH = 64

_log = Logger()


class CertificateAuthorityError(KeyMaterialError):
    """
    An EMS CA cannot be created, loaded, rotated or used.  The message says
    why and what to do, and never contains key material.
    """


@frozen
class AuthorityFiles:
    """
    Where one EMS keeps its CA in the state directory.

    @ivar directory: C{<state-dir>/ems<id>}, mode 0700.
    @ivar certificate: the CA certificate.
    @ivar key: the CA private key.
    @ivar previousDirectory: where the CA replaced by a rotation waits to be
        retired.
    @ivar previousCertificate: the replaced CA certificate, still trusted.
    @ivar previousKey: the replaced CA key, kept (never used) so that a
        mistaken rotation can be undone by hand.
    """

    directory: str
    certificate: str
    key: str
    previousDirectory: str
    previousCertificate: str
    previousKey: str


def authorityFiles(stateDir: str, emsId: int) -> AuthorityFiles:
    """
    The paths of C{fctems} entry C{emsId}'s CA files under C{stateDir}.
    """
    directory = os.path.join(os.path.abspath(stateDir), f"ems{emsId}")
    previous = os.path.join(directory, "previous")
    return AuthorityFiles(
        directory=directory,
        certificate=os.path.join(directory, "ca.crt"),
        key=os.path.join(directory, "ca.key"),
        previousDirectory=previous,
        previousCertificate=os.path.join(previous, "ca.crt"),
        previousKey=os.path.join(previous, "ca.key"),
    )


@frozen
class EmsCertificateAuthority:
    """
    An EMS CA: what signs device and gateway certificates, and what the
    gateway trusts device certificates from.

    @ivar certificate: the CA certificate.
    @ivar privateKey: its private key.  Never printed: it takes no part in
        C{repr} or equality.
    @ivar source: where it came from, for messages and logs: the
        certificate's path, C{vpn certificate local 'NAME'}, or C{new, not
        stored}.
    @ivar previous: CA certificates replaced by a rotation and not yet
        retired.  Certificates they issued are still accepted; they never
        sign anything.
    """

    certificate: x509.Certificate
    privateKey: PrivateKey = field(repr=False, eq=False)
    source: str
    previous: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> str:
        """
        The CA's subject as RFC 4514 text (C{CN=...,O=...}).
        """
        return self.certificate.subject.rfc4514_string()

    @property
    def fingerprint(self) -> str:
        """
        The CA certificate's SHA-256 fingerprint, colon-separated hex.
        """
        return fingerprint(self.certificate)

    def trustedCertificates(self) -> tuple[x509.Certificate, ...]:
        """
        Every CA certificate a device certificate may chain to: this CA and
        the previous ones not yet retired.  The gateway's TLS layer puts
        exactly these in its trust store.
        """
        return (self.certificate,) + self.previous

    def certificatePem(self) -> bytes:
        """
        The CA certificate in PEM, as clients get it at enrollment.
        """
        return certificatePem(self.certificate)


def authoritySubject(emsSerial: str, hostname: str) -> x509.Name:
    """
    The subject of a new EMS CA: C{CN=ztnagw EMS CA <emsSerial>,
    O=<hostname>}.  The EMS serial number in the issuer name of every device
    certificate is how the certificate names its EMS, as FortiClient EMS
    certificates do.

    @param emsSerial: the C{fctems} C{serial-number}; may be empty.
    @param hostname: the gateway's C{config system global} C{hostname}; may
        be empty.
    @raise CertificateAuthorityError: a value is too long for X.509.
    """
    commonName = f"ztnagw EMS CA {emsSerial}".rstrip()
    attributes = []
    if hostname:
        if len(hostname) > _MAX_NAME_LENGTH:
            raise CertificateAuthorityError(
                f"the hostname {hostname!r} is longer than {_MAX_NAME_LENGTH} "
                f"characters and cannot name the EMS CA"
            )
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, hostname))
    if len(commonName) > _MAX_NAME_LENGTH:
        raise CertificateAuthorityError(
            f"the EMS serial number {emsSerial!r} is too long to name the EMS CA"
        )
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, commonName))
    return x509.Name(attributes)


def _utcNow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def createCertificateAuthority(
    emsSerial: str,
    hostname: str,
    now: datetime.datetime | None = None,
    validity: datetime.timedelta = CA_VALIDITY,
) -> EmsCertificateAuthority:
    """
    Make a new EMS CA in memory (see L{storeCertificateAuthority} to keep
    it).

    @param emsSerial: the C{fctems} C{serial-number}, shown in the subject.
    @param hostname: the gateway's host name, the subject's organisation.
    @param now: the current time (tests fix it); the clock by default.
    @param validity: how long the CA is valid from C{now}.
    @return: the CA, with C{source} C{"new, not stored"}.
    @raise CertificateAuthorityError: C{emsSerial} or C{hostname} cannot be
        put in a certificate.
    """
    if now is None:
        now = _utcNow()
    key = newPrivateKey()
    subject = authoritySubject(emsSerial, hostname)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(newSerial())
        .not_valid_before(now - CA_BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(key, signatureHash(key))
    )
    return EmsCertificateAuthority(
        certificate=certificate, privateKey=key, source="new, not stored"
    )


def certificateAuthorityProblem(certificate: x509.Certificate) -> str | None:
    """
    Why C{certificate} cannot be an EMS CA, or C{None} if it can.

    It must say it is a CA (basic constraints), may sign certificates (key
    usage, when present) and carry a key the EMS role accepts.
    """
    try:
        constraints = certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        return "it is not a CA certificate (no basic constraints)"
    except ValueError as e:
        return f"its extensions cannot be read ({e})"
    if not constraints.ca:
        return "it is not a CA certificate (basic constraints CA:FALSE)"
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not usage.key_cert_sign:
            return "its key usage does not allow signing certificates"
    try:
        publicKey = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "its public key cannot be read"
    problem = publicKeyProblem(publicKey)
    if problem is not None:
        return problem
    return None


def certificateAuthorityFromLocalCertificate(
    name: str, certificate: x509.Certificate, privateKey: PrivateKey
) -> EmsCertificateAuthority:
    """
    Use an operator's own CA, named by the C{fctems} C{ca-certificate}
    option (an entry of C{config vpn certificate local}).

    @param name: the C{vpn certificate local} entry's name, for messages.
    @param certificate: the entry's certificate.
    @param privateKey: the entry's private key.
    @raise CertificateAuthorityError: the certificate is not a usable CA or
        the key is not its key.
    """
    where = f"vpn certificate local {name!r}"
    problem = certificateAuthorityProblem(certificate)
    if problem is not None:
        raise CertificateAuthorityError(f"{where} cannot be an EMS CA: {problem}")
    if not keyMatchesCertificate(privateKey, certificate):
        raise CertificateAuthorityError(
            f"{where}: the private key does not belong to the certificate"
        )
    return EmsCertificateAuthority(
        certificate=certificate, privateKey=privateKey, source=where
    )


def _directoryProblem(path: str) -> str | None:
    # Whoever can write to the directory can swap the CA for their own,
    # whatever the files' own modes are.
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_mode & 0o022:
        return (
            f"{path} is writable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run: chmod go-w {path}"
        )
    return None


def _makePrivateDirectory(path: str) -> None:
    """
    Create C{path} (and its parent, the state directory, if missing) with
    mode 0700 whatever the umask; refuse an existing one, or a parent, that
    others can write to.
    """
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(os.path.dirname(parent), exist_ok=True)
        _makeDirectory(parent)
    # The parent is checked first: whoever can write to it could put
    # something else in the place of the directory created next.
    _refuseLooseDirectory(parent, path)
    _makeDirectory(path)
    _refuseLooseDirectory(path, path)


def _refuseLooseDirectory(directory: str, using: str) -> None:
    problem = _directoryProblem(directory)
    if problem is not None:
        raise CertificateAuthorityError(f"refusing to use {using}: {problem}")


def _makeDirectory(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    # mkdir's mode is masked by the umask; the directory is still empty,
    # so setting the exact mode now leaves no window.
    os.chmod(path, 0o700)


def hasCertificateAuthority(stateDir: str, emsId: int) -> bool:
    """
    Whether any part of EMS C{emsId}'s CA (certificate or key) exists in
    C{stateDir}.
    """
    files = authorityFiles(stateDir, emsId)
    return os.path.lexists(files.certificate) or os.path.lexists(files.key)


def storeCertificateAuthority(
    ca: EmsCertificateAuthority, stateDir: str, emsId: int
) -> EmsCertificateAuthority:
    """
    Write a new CA into EMS C{emsId}'s directory: the key (0600) first, then
    the certificate (0644).

    @return: C{ca} with its C{source} set to the certificate's path.
    @raise CertificateAuthorityError: a CA (or part of one) is already
        there; it is never overwritten.
    @raise OSError: the files cannot be written.
    """
    files = authorityFiles(stateDir, emsId)
    if hasCertificateAuthority(stateDir, emsId):
        raise CertificateAuthorityError(
            f"EMS {emsId} already has a certificate authority in "
            f"{files.directory}; it is never overwritten (see 'ztnagw ems init "
            f"--rotate')"
        )
    _makePrivateDirectory(files.directory)
    # The key goes first: a crash between the two writes leaves a key
    # without a certificate, which loading refuses clearly, rather than a
    # certificate whose key is lost.
    writePrivateFile(files.key, privateKeyPem(ca.privateKey))
    writePublicFile(files.certificate, ca.certificatePem())
    return evolve(ca, source=files.certificate)


def loadCertificateAuthority(stateDir: str, emsId: int) -> EmsCertificateAuthority:
    """
    Load EMS C{emsId}'s CA from the state directory, with the previous CA
    of an unfinished rotation.

    @raise CertificateAuthorityError: there is no CA, or only half of one;
        the key file or the directory is accessible by other users (the
        message gives the C{chmod} to run); the key does not belong to the
        certificate; the certificate is not a CA.
    """
    files = authorityFiles(stateDir, emsId)
    haveCertificate = os.path.lexists(files.certificate)
    haveKey = os.path.lexists(files.key)
    if not haveCertificate and not haveKey:
        raise CertificateAuthorityError(
            f"EMS {emsId} has no certificate authority in {files.directory}; "
            f"create one with: ztnagw ems init --ems {emsId}"
        )
    if not haveKey:
        raise CertificateAuthorityError(
            f"the EMS {emsId} CA key {files.key} is missing but its "
            f"certificate {files.certificate} exists; restore the key from a "
            f"backup, or remove the certificate to create a new CA (every "
            f"device must then enroll again)"
        )
    if not haveCertificate:
        raise CertificateAuthorityError(
            f"the EMS {emsId} CA certificate {files.certificate} is missing but "
            f"its key {files.key} exists; restore the certificate from a "
            f"backup, or remove the key to create a new CA (every device must "
            f"then enroll again)"
        )
    for directory in (os.path.dirname(files.directory), files.directory):
        problem = _directoryProblem(directory)
        if problem is not None:
            raise CertificateAuthorityError(f"refusing the EMS {emsId} CA: {problem}")
    try:
        key = readPrivateKeyFile(files.key, f"EMS {emsId} CA key")
        certificate = readCertificateFile(
            files.certificate, f"EMS {emsId} CA certificate"
        )
    except CertificateAuthorityError:
        raise
    except KeyMaterialError as e:
        raise CertificateAuthorityError(str(e)) from None
    problem = certificateAuthorityProblem(certificate)
    if problem is not None:
        raise CertificateAuthorityError(
            f"the EMS {emsId} CA certificate {files.certificate} cannot be "
            f"used: {problem}"
        )
    if not keyMatchesCertificate(key, certificate):
        raise CertificateAuthorityError(
            f"the EMS {emsId} CA key {files.key} does not belong to the "
            f"certificate {files.certificate}; if a rotation was interrupted, "
            f"the replaced pair is in {files.previousDirectory} (see "
            f"docs/ems.md, 'Rotating the EMS CA')"
        )
    previous = _loadPrevious(files, emsId, certificate)
    return EmsCertificateAuthority(
        certificate=certificate,
        privateKey=key,
        source=files.certificate,
        previous=previous,
    )


def _loadPrevious(
    files: AuthorityFiles, emsId: int, current: x509.Certificate
) -> tuple[x509.Certificate, ...]:
    if not os.path.lexists(files.previousCertificate):
        return ()
    problem = _directoryProblem(files.previousDirectory)
    if problem is None and os.path.lexists(files.previousKey):
        problem = privateFileProblem(files.previousKey)
    if problem is not None:
        raise CertificateAuthorityError(
            f"refusing the previous EMS {emsId} CA: {problem}"
        )
    try:
        certificate = readCertificateFile(
            files.previousCertificate, f"previous EMS {emsId} CA certificate"
        )
    except KeyMaterialError as e:
        raise CertificateAuthorityError(str(e)) from None
    problem = certificateAuthorityProblem(certificate)
    if problem is not None:
        raise CertificateAuthorityError(
            f"the previous EMS {emsId} CA certificate "
            f"{files.previousCertificate} cannot be used: {problem}"
        )
    if certificate == current:
        # A rotation stopped after saving the old CA and before writing the
        # new one: nothing was replaced.
        return ()
    return (certificate,)


def ensureCertificateAuthority(
    stateDir: str,
    ems: "EmsConnector",
    hostname: str,
    now: datetime.datetime | None = None,
) -> EmsCertificateAuthority:
    """
    Make sure C{fctems} entry C{ems} has a CA in the state directory: create
    it on first start, load it afterwards.  An existing CA, or part of one,
    is never overwritten.

    Creation is logged (subject, fingerprint, path; never the key).

    @param ems: the entry; its C{id} and C{serialNumber} are used.
    @param hostname: the gateway's host name, for a new CA's subject.
    @param now: the current time; the clock by default.
    @raise CertificateAuthorityError: the CA cannot be loaded (see
        L{loadCertificateAuthority}), or the entry names a C{ca-certificate}:
        that CA is the operator's and comes from C{config vpn certificate
        local} (see L{certificateAuthorityFromLocalCertificate}).
    """
    if ems.caCertificate is not None:
        raise CertificateAuthorityError(
            f"EMS {ems.id} uses ca-certificate {ems.caCertificate!r} from "
            f"'config vpn certificate local'; ztnagw does not create a CA for it"
        )
    if hasCertificateAuthority(stateDir, ems.id):
        return loadCertificateAuthority(stateDir, ems.id)
    ca = storeCertificateAuthority(
        createCertificateAuthority(ems.serialNumber or "", hostname, now),
        stateDir,
        ems.id,
    )
    _log.info(
        "Created the EMS {emsId} certificate authority {subject} "
        "(SHA-256 {fingerprint}, {keyType}) in {path}",
        emsId=ems.id,
        subject=ca.subject,
        fingerprint=ca.fingerprint,
        keyType=describeKey(ca.privateKey),
        path=ca.source,
    )
    return ca


def rotateCertificateAuthority(
    stateDir: str,
    emsId: int,
    emsSerial: str,
    hostname: str,
    now: datetime.datetime | None = None,
) -> EmsCertificateAuthority:
    """
    Replace EMS C{emsId}'s CA with a new one, keeping the old one in
    C{previous/}: it stays trusted (it signs nothing) until
    L{retirePreviousCertificateAuthority}, so that devices can enroll again
    meanwhile.

    At most one previous CA is kept: a second rotation must wait until the
    first one's previous CA is retired.

    @return: the new CA, with the replaced one in C{previous}.
    @raise CertificateAuthorityError: there is no CA to rotate, the current
        one cannot be loaded, or a previous CA is still trusted.
    @raise OSError: the files cannot be written.
    """
    current = loadCertificateAuthority(stateDir, emsId)
    files = authorityFiles(stateDir, emsId)
    if current.previous:
        raise CertificateAuthorityError(
            f"EMS {emsId} still trusts the CA replaced by the last rotation "
            f"(SHA-256 {fingerprint(current.previous[0])}); retire it first: "
            f"ztnagw ems init --ems {emsId} --retire-previous"
        )
    new = createCertificateAuthority(emsSerial, hostname, now)
    _makePrivateDirectory(files.previousDirectory)
    # Copy the exact bytes: what is trusted after the rotation is what was
    # trusted before.
    with open(files.key, "rb") as f:
        writePrivateFile(files.previousKey, f.read())
    with open(files.certificate, "rb") as f:
        writePublicFile(files.previousCertificate, f.read())
    writePrivateFile(files.key, privateKeyPem(new.privateKey))
    writePublicFile(files.certificate, new.certificatePem())
    return loadCertificateAuthority(stateDir, emsId)


def retirePreviousCertificateAuthority(stateDir: str, emsId: int) -> x509.Certificate:
    """
    Stop trusting the CA replaced by the last rotation of EMS C{emsId}:
    delete its key, then its certificate.  Devices still holding
    certificates it issued are refused from the next gateway start.

    @return: the retired CA certificate.
    @raise CertificateAuthorityError: there is no previous CA, or the
        current CA cannot be loaded (retiring the old one would then leave
        nothing to trust).
    """
    current = loadCertificateAuthority(stateDir, emsId)
    files = authorityFiles(stateDir, emsId)
    if not os.path.lexists(files.previousCertificate):
        raise CertificateAuthorityError(
            f"EMS {emsId} has no previous certificate authority to retire"
        )
    if not current.previous:
        raise CertificateAuthorityError(
            f"the CA in {files.previousDirectory} is the current EMS {emsId} "
            f"CA (a rotation stopped before writing the new one); nothing to "
            f"retire: finish the rotation with 'ztnagw ems init --ems {emsId} "
            f"--rotate'"
        )
    retired = current.previous[0]
    # The key goes first: if this stops half-way, the certificate is still
    # there and running the command again finishes the job.
    if os.path.lexists(files.previousKey):
        os.unlink(files.previousKey)
    os.unlink(files.previousCertificate)
    try:
        os.rmdir(files.previousDirectory)
    except OSError:
        pass
    return retired

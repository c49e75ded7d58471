"""
Tests for L{ztnagw.forwarder.profile}.
"""

from __future__ import annotations

import json
import os
import stat

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.support.pki import DEVICE_UID, makeCA, makeDevice, newKey
from ztnagw.forwarder.profile import (
    CA_FILE,
    CERTIFICATE_FILE,
    KEY_FILE,
    METADATA_FILE,
    ProfileError,
    defaultProfileRoot,
    loadProfile,
    parseEmsUrl,
    parseHostPort,
    profileDirectory,
    storeProfile,
)
from ztnagw.registry.record import canonicalSerial
from ztnagw.tls.client import formatPin
from ztnagw.tunnel import wire


class LocationTests(SynchronousTestCase):
    """
    Where profiles live.
    """

    def test_xdg(self) -> None:
        """
        Named profiles live under C{$XDG_CONFIG_HOME/ztnagw-forward}, else
        C{~/.config/ztnagw-forward}; a relative XDG value is ignored.
        """
        self.assertEqual(
            defaultProfileRoot({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/home/u"}),
            "/x/cfg/ztnagw-forward",
        )
        self.assertEqual(defaultProfileRoot({"HOME": "/home/u"}), "/home/u/.config/ztnagw-forward")
        self.assertEqual(
            defaultProfileRoot({"XDG_CONFIG_HOME": "rel", "HOME": "/home/u"}),
            "/home/u/.config/ztnagw-forward",
        )

    def test_nameOrPath(self) -> None:
        """
        A name is a directory under the root; anything with a slash is a
        path; no name is C{default}.
        """
        env = {"HOME": "/home/u"}
        self.assertEqual(profileDirectory(None, env), "/home/u/.config/ztnagw-forward/default")
        self.assertEqual(profileDirectory("lab", env), "/home/u/.config/ztnagw-forward/lab")
        self.assertEqual(profileDirectory("/etc/p", env), "/etc/p")
        self.assertEqual(profileDirectory("./p", env), os.path.abspath("p"))

    def test_badName(self) -> None:
        """
        A name that would escape or hide is refused.
        """
        for name in ("..x", "", ".hidden", "a b", "x" * 65):
            self.assertRaises(ProfileError, profileDirectory, name, {"HOME": "/h"})


class AddressTests(SynchronousTestCase):
    """
    The EMS URL and gateway addresses a user types.
    """

    def test_emsUrl(self) -> None:
        """
        C{https://HOST[:PORT]}, port 443 by default, IPv6 in brackets.
        """
        self.assertEqual(parseEmsUrl("https://ems.example.com:8013"), ("ems.example.com", 8013))
        self.assertEqual(parseEmsUrl("https://127.0.0.1/"), ("127.0.0.1", 443))
        self.assertEqual(parseEmsUrl("https://[::1]:9"), ("::1", 9))

    def test_emsUrlRefused(self) -> None:
        """
        Other schemes, credentials, paths and bad ports are refused with a
        message naming the URL.
        """
        for url in (
            "http://ems:1",
            "https://u:p@ems:1",
            "https://ems:1/api",
            "https://ems:99999",
            "https://:1",
            "ems:1",
            "https://ems:1?x",
        ):
            error = self.assertRaises(ValueError, parseEmsUrl, url)
            self.assertIn(repr(url), str(error))

    def test_hostPort(self) -> None:
        """
        C{HOST:PORT} and C{[v6]:PORT}; a default port when allowed.
        """
        self.assertEqual(parseHostPort("gw:443"), ("gw", 443))
        self.assertEqual(parseHostPort("[2001:db8::1]:8443"), ("2001:db8::1", 8443))
        self.assertEqual(parseHostPort("gw", 443), ("gw", 443))
        self.assertEqual(parseHostPort("[2001:db8::1]", 443), ("2001:db8::1", 443))
        self.assertEqual(parseHostPort("GW.Example.COM.", 443), ("gw.example.com", 443))
        for text in ("gw", "gw:0", "gw:70000", "gw:0443", "a b:1", "gw:1:2", "", "127.1:443"):
            self.assertRaises(ValueError, parseHostPort, text)
        for text in ("gw:0", "a b", "gw:1:2", "", "127.1", "[::1%eth0]"):
            self.assertRaises(ValueError, parseHostPort, text, 443)

    @given(st.text(max_size=40))
    def test_anyText(self, text: str) -> None:
        """
        Any text is an address or a L{ValueError}, never another exception.
        """
        for parse in (parseEmsUrl, parseHostPort):
            try:
                host, port = parse(text)
            except ValueError:
                continue
            self.assertTrue(host)
            self.assertTrue(1 <= port <= 65535)

    @given(
        st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,10}[a-z0-9])?){0,3}", fullmatch=True),
        st.integers(1, 65535),
    )
    def test_roundTrip(self, host: str, port: int) -> None:
        """
        What is written as C{HOST:PORT} reads back, by the same rules as
        the forwarder's other addresses (L{ztnagw.tunnel.wire}).
        """
        self.assertEqual(wire.parseHostPort(f"{host}:{port}"), (host, port))
        self.assertEqual(parseHostPort(f"{host}:{port}"), (host, port))
        self.assertEqual(parseEmsUrl(f"https://{host}:{port}"), (host, port))


class StoreLoadTests(SynchronousTestCase):
    """
    A stored profile loads back, and a damaged one is refused with advice.
    """

    def setUp(self) -> None:
        self.ca = makeCA()
        self.device = makeDevice(self.ca, DEVICE_UID, key=newKey())
        self.directory = os.path.join(self.mktemp(), "profiles", "lab")

    def _store(self, **kwargs: object) -> None:
        arguments: dict[str, object] = dict(
            privateKey=self.device.key,
            certificate=self.device.certificate,
            caCertificates=(self.ca.certificate,),
            emsUrl="https://127.0.0.1:18013",
            emsPin=b"\x01" * 32,
            gateway="127.0.0.1:11443",
            enrolledAt="2025-01-01T00:00:00Z",
        )
        arguments.update(kwargs)
        storeProfile(self.directory, **arguments)  # type: ignore[arg-type]

    def test_roundTrip(self) -> None:
        """
        Everything stored is loaded back; the key file is 0600 and the
        directory 0700.
        """
        self._store()
        profile = loadProfile(self.directory)
        self.assertEqual(profile.uid, DEVICE_UID)
        self.assertEqual(profile.certSerial, canonicalSerial(self.device.serial))
        self.assertEqual(profile.emsAddress, ("127.0.0.1", 18013))
        self.assertEqual(profile.emsPin, b"\x01" * 32)
        self.assertEqual(profile.gatewayAddress, ("127.0.0.1", 11443))
        self.assertEqual(profile.caCertificates, (self.ca.certificate,))
        self.assertEqual(profile.certificate, self.device.certificate)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.directory, KEY_FILE)).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.directory).st_mode), 0o700)
        with open(os.path.join(self.directory, METADATA_FILE)) as f:
            metadata = json.load(f)
        self.assertEqual(metadata["emsPin"], formatPin(b"\x01" * 32))
        self.assertNotIn("PRIVATE", json.dumps(metadata))

    def test_creators(self) -> None:
        """
        The profile makes client TLS creators for gateways and the EMS.
        """
        self._store(emsPin=None)
        profile = loadProfile(self.directory)
        self.assertIsNotNone(profile.clientCreator("127.0.0.1"))
        self.assertIsNotNone(profile.emsClientCreator())
        self._store()
        self.assertIsNotNone(loadProfile(self.directory).emsClientCreator())

    def test_missing(self) -> None:
        """
        No profile: the message says how to enroll.
        """
        error = self.assertRaises(ProfileError, loadProfile, self.directory)
        self.assertIn("ztnagw-forward enroll", str(error))

    def test_looseKey(self) -> None:
        """
        A key others can read is refused, with the chmod to run.
        """
        self._store()
        os.chmod(os.path.join(self.directory, KEY_FILE), 0o640)
        error = self.assertRaises(ProfileError, loadProfile, self.directory)
        self.assertIn("chmod 600", str(error))

    def test_otherKey(self) -> None:
        """
        A key that does not belong to the certificate (an interrupted
        enrollment) is refused with the advice to enroll again.
        """
        self._store()
        other = makeDevice(self.ca, DEVICE_UID, key=newKey())
        with open(os.path.join(self.directory, CERTIFICATE_FILE), "wb") as f:
            f.write(other.certificatePem())
        error = self.assertRaises(ProfileError, loadProfile, self.directory)
        self.assertIn("enroll again", str(error))

    def test_wrongSerial(self) -> None:
        """
        A certificate whose serial is not the profile's is refused.
        """
        self._store()
        path = os.path.join(self.directory, METADATA_FILE)
        with open(path) as f:
            metadata = json.load(f)
        metadata["certSerial"] = "01"
        with open(path, "w") as f:
            json.dump(metadata, f)
        error = self.assertRaises(ProfileError, loadProfile, self.directory)
        self.assertIn("not 01", str(error))

    def test_damagedDescription(self) -> None:
        """
        A C{profile.json} that is not JSON, or of another format, is
        refused.
        """
        self._store()
        path = os.path.join(self.directory, METADATA_FILE)
        for text in ("{", "[]", '{"format": 2}', '{"format": 1, "uid": 5}'):
            with open(path, "w") as f:
                f.write(text)
            self.assertRaises(ProfileError, loadProfile, self.directory)

    def test_noCa(self) -> None:
        """
        A CA file without certificates is refused.
        """
        self._store()
        with open(os.path.join(self.directory, CA_FILE), "w") as f:
            f.write("nothing")
        self.assertRaises(ProfileError, loadProfile, self.directory)

    def test_notADevice(self) -> None:
        """
        Only a device certificate for the device key is stored.
        """
        server = makeDevice(self.ca, "not-a-uid", key=self.device.key)
        self.assertRaises(ProfileError, self._store, certificate=server.certificate)
        self.assertRaises(ProfileError, self._store, privateKey=newKey())
        self.assertFalse(os.path.exists(self.directory))

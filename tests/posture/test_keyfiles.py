"""
Every private key the daemon loads is refused, and the daemon does not
start, when another user could read it; every key it creates is mode 0600
in a state directory of mode 0700.  Checked with the real daemon
(C{twistd -n ztnagw}), one key at a time, group- and world-readable.

The loaders' unit tests (L{tests.ems.test_keys}, L{tests.ems.test_ca},
L{tests.ems.test_listener}, L{tests.config.test_certificates}) show each
refusal in isolation; this shows that the daemon really goes through them
at start, for each key it has.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import Gateway

#: The keys a daemon with one EMS and an auto-generated gateway
#: certificate loads, relative to its directory, and how its refusal names
#: the key.
KEYS = {
    "state/ems1/ca.key": "refusing EMS 1 CA key",
    "state/ems1/listener.key": "refusing EMS 1 listener key",
    "state/gateway.key": 'vpn certificate local "gateway": private key file',
}

#: The keys the daemon itself creates at its first start (so a first start
#: comes before the refusal): the identity-assertion signing key and the
#: persistence-cookie key.
CREATED_AT_START = {
    "state/identity/identity.key": "identity/identity.key",
    "state/persistence.key": "persistence.key",
}


class RefusedTests(TestCase):
    """
    A key file others can read stops the daemon with a message that names
    the file and the fix.
    """

    def assertRefused(self, relative: str, mode: int, expected: str, startFirst: bool = False) -> None:
        """
        With C{relative} at C{mode}, the daemon exits at start with a log
        naming the file, its mode and the C{chmod} that fixes it; with the
        mode fixed it starts.

        @param startFirst: start and stop the daemon once before, so that
            it creates the key.
        """
        gateway = Gateway(self.mktemp())
        self.addCleanup(gateway.stop)
        if startFirst:
            gateway.start()
            gateway.stop()
        path = os.path.join(gateway.directory, relative)
        os.chmod(path, mode)
        with self.assertRaises(RuntimeError) as caught:
            gateway.start()
        log = str(caught.exception)
        self.assertIn(expected, log)
        self.assertIn(f"{path} is accessible by other users (mode {mode:04o})", log)
        self.assertIn(f"chmod 600 {path}", log)
        gateway.stop()
        os.chmod(path, 0o600)
        gateway.start()

    def test_emsCaKey(self) -> None:
        """
        The EMS CA key, group-readable.
        """
        self.assertRefused("state/ems1/ca.key", 0o640, KEYS["state/ems1/ca.key"])

    def test_emsListenerKey(self) -> None:
        """
        The EMS listener key, world-readable.
        """
        self.assertRefused("state/ems1/listener.key", 0o604, KEYS["state/ems1/listener.key"])

    def test_gatewayCertificateKey(self) -> None:
        """
        The VIPs' certificate key, group-writable only (any permission for
        others counts).
        """
        self.assertRefused("state/gateway.key", 0o620, KEYS["state/gateway.key"])

    def test_identityKey(self) -> None:
        """
        The key that signs identity assertions for real servers,
        group-readable.
        """
        self.assertRefused(
            "state/identity/identity.key", 0o640, CREATED_AT_START["state/identity/identity.key"], startFirst=True
        )

    def test_persistenceKey(self) -> None:
        """
        The key that authenticates persistence cookies, world-readable.
        """
        self.assertRefused("state/persistence.key", 0o604, CREATED_AT_START["state/persistence.key"], startFirst=True)

    def test_inlineKey(self) -> None:
        """
        A configuration holding a private key inline is a key file too: it
        is refused when others can read it.
        """
        gateway = Gateway(self.mktemp())
        self.addCleanup(gateway.stop)
        with open(os.path.join(gateway.directory, "state", "gateway.crt")) as f:
            certificate = f.read()
        with open(os.path.join(gateway.directory, "state", "gateway.key")) as f:
            key = f.read()
        with open(gateway.configPath) as f:
            text = f.read()
        text = text.replace(
            '        set certificate-file "gateway.crt"\n'
            '        set private-key-file "gateway.key"\n'
            "        set auto-generate enable\n",
            f'        set certificate "{certificate}"\n        set private-key "{key}"\n',
        )
        self.assertIn("set private-key \"-----BEGIN", text)
        with open(gateway.configPath, "w") as f:
            f.write(text)
        os.chmod(gateway.configPath, 0o644)
        with self.assertRaises(RuntimeError) as caught:
            gateway.start()
        self.assertIn("the configuration holds an inline private key, but the configuration file", str(caught.exception))
        gateway.stop()
        os.chmod(gateway.configPath, 0o600)
        gateway.start()


class CreatedTests(TestCase):
    """
    What the daemon creates is private.
    """

    def test_modes(self) -> None:
        """
        After a start: every key 0600 (those made before it and those it
        makes), the registry 0600, the state directory and the EMS
        directory 0700.
        """
        gateway = Gateway(self.mktemp())
        self.addCleanup(gateway.stop)
        gateway.start()
        modes = {
            relative: stat.S_IMODE(os.stat(os.path.join(gateway.directory, relative)).st_mode)
            for relative in [*KEYS, *CREATED_AT_START, "state/ems1/registry.sqlite", "state", "state/ems1"]
        }
        self.assertEqual(
            modes,
            {
                "state/ems1/ca.key": 0o600,
                "state/ems1/listener.key": 0o600,
                "state/gateway.key": 0o600,
                "state/identity/identity.key": 0o600,
                "state/persistence.key": 0o600,
                "state/ems1/registry.sqlite": 0o600,
                "state": 0o700,
                "state/ems1": 0o700,
            },
        )

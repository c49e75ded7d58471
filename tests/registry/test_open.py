"""
Tests for L{ztnagw.registry.openStore}: from an fctems C{registry} URL to a
store.
"""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.registry import _SUPPORTED, openStore, registryPath
from ztnagw.registry.exceptions import RegistryCorrupt
from ztnagw.registry.interfaces import IEndpointStore, RegistryUnavailable


class RegistryPathTests(SynchronousTestCase):
    """
    L{registryPath}.
    """

    def test_default(self) -> None:
        """
        C{sqlite:} is the per-EMS file in the state directory.
        """
        self.assertEqual(
            registryPath("sqlite:", "/var/lib/ztnagw", 2),
            "/var/lib/ztnagw/ems2/registry.sqlite",
        )

    def test_relative(self) -> None:
        """
        A relative path is taken from the state directory.
        """
        self.assertEqual(
            registryPath("sqlite:shared/devices.db", "/var/lib/ztnagw", 1),
            "/var/lib/ztnagw/shared/devices.db",
        )

    def test_absolute(self) -> None:
        """
        An absolute path is used as given.
        """
        self.assertEqual(
            registryPath("sqlite:/srv/devices.db", "/var/lib/ztnagw", 1),
            "/srv/devices.db",
        )

    def test_otherScheme(self) -> None:
        """
        Another scheme is refused with the supported ones, and without
        repeating the rest of the URL, which may hold a password.
        """
        error = self.assertRaises(
            RegistryUnavailable,
            registryPath,
            "postgresql://gw:s3cret@db/ztnagw",
            "/var/lib/ztnagw",
            1,
        )
        self.assertIn("postgresql:", str(error))
        self.assertIn("'sqlite:'", str(error))
        self.assertNotIn("s3cret", str(error))

    def test_noScheme(self) -> None:
        """
        A bare path is not a registry URL.
        """
        error = self.assertRaises(
            RegistryUnavailable, registryPath, "/srv/devices.db", "/s", 1
        )
        self.assertIn("'sqlite:PATH'", str(error))


class OpenStoreTests(SynchronousTestCase):
    """
    L{openStore}.
    """

    def test_opens(self) -> None:
        """
        The default URL opens (creating) the EMS's registry.
        """
        stateDir = os.path.abspath(self.mktemp())
        store = openStore("sqlite:", stateDir, 3)
        self.addCleanup(store.close)
        self.assertTrue(IEndpointStore.providedBy(store))
        self.assertTrue(os.path.isfile(os.path.join(stateDir, "ems3", "registry.sqlite")))

    def test_corrupt(self) -> None:
        """
        A file that is not a database raises L{RegistryCorrupt}.
        """
        stateDir = os.path.abspath(self.mktemp())
        os.mkdir(stateDir)
        with open(os.path.join(stateDir, "bad.db"), "wb") as f:
            f.write(b"\x00garbage" * 100)
        self.assertRaises(RegistryCorrupt, openStore, "sqlite:bad.db", stateDir, 1)


class UrlParsingTests(SynchronousTestCase):
    """
    L{registryPath} on any text.
    """

    @given(st.text(max_size=60))
    def test_anyUrl(self, url: str) -> None:
        """
        Any text is either an embedded registry URL or refused with
        L{RegistryUnavailable}, whose message shows at most the scheme.
        """
        try:
            path = registryPath(url, "/state", 1)
        except RegistryUnavailable as e:
            scheme, colon, _ = url.partition(":")
            self.assertFalse(colon and scheme.lower() == "sqlite")
            shown = f"{scheme}:" if colon else "a URL without a scheme"
            self.assertEqual(str(e), f"registry {shown} is not supported; {_SUPPORTED}")
        else:
            self.assertTrue(url.lower().startswith("sqlite:"))
            self.assertTrue(path.startswith("/"))

"""
Tests for L{ztnagw.config.model}: the helpers other modules rely on, above
all the client-certificate precedence rule.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.model import (
    DEFAULT_CLIENT_CERTIFICATE_SETTINGS,
    AccessProxy,
    ClientCertificateSettings,
    Config,
    ConflictingSettings,
    OnetimeSchedule,
    RecurringSchedule,
    Vip,
    VirtualHost,
)

from tests.config.helpers import MINIMAL, load


def _config(vip: dict[str, object], proxy: dict[str, object], host: dict[str, object] | None = None) -> Config:
    hosts = {}
    if host is not None:
        hosts["h"] = VirtualHost(name="h", host="h.example", **host)  # type: ignore[arg-type]
    return Config(
        vips={"v": Vip(name="v", **vip)},  # type: ignore[arg-type]
        accessProxies={"p": AccessProxy(name="p", vip="v", **proxy)},  # type: ignore[arg-type]
        virtualHosts=hosts,
    )


class ClientCertificateSettingsTests(SynchronousTestCase):
    """
    L{Config.clientCertificateSettings}: the virtual host wins, then the
    VIP or its access proxy, then FortiOS's defaults.
    """

    def test_defaults(self) -> None:
        """
        With nothing set, FortiOS's defaults apply: certificates asked for,
        clients without one blocked, User-Agent detection on.
        """
        config = _config({}, {})
        self.assertEqual(config.clientCertificateSettings("v"), DEFAULT_CLIENT_CERTIFICATE_SETTINGS)
        self.assertEqual(
            DEFAULT_CLIENT_CERTIFICATE_SETTINGS,
            ClientCertificateSettings(clientCert=True, emptyCertAction="block", userAgentDetect=True),
        )

    def test_vipOrAccessProxy(self) -> None:
        """
        A setting on the VIP (FortiOS 7.6) or on its access proxy (7.0-7.4)
        applies.
        """
        self.assertEqual(
            _config({"emptyCertAction": "accept"}, {}).clientCertificateSettings("v").emptyCertAction,
            "accept",
        )
        self.assertEqual(
            _config({}, {"emptyCertAction": "accept"}).clientCertificateSettings("v").emptyCertAction,
            "accept",
        )
        self.assertEqual(
            _config({"clientCert": False}, {"clientCert": False}).clientCertificateSettings("v").clientCert,
            False,
        )

    def test_virtualHostWins(self) -> None:
        """
        A setting on the virtual host wins, option by option; others come
        from the VIP.
        """
        config = _config(
            {"emptyCertAction": "accept", "userAgentDetect": False},
            {},
            {"emptyCertAction": "accept-unmanageable"},
        )
        self.assertEqual(
            config.clientCertificateSettings("v", "h"),
            ClientCertificateSettings(clientCert=True, emptyCertAction="accept-unmanageable", userAgentDetect=False),
        )
        self.assertEqual(config.clientCertificateSettings("v").emptyCertAction, "accept")

    def test_conflict(self) -> None:
        """
        A VIP and its access proxy disagreeing raise L{ConflictingSettings}
        (a loaded configuration never has one).
        """
        config = _config({"clientCert": True}, {"clientCert": False})
        error = self.assertRaises(ConflictingSettings, config.clientCertificateSettings, "v")
        self.assertEqual(error.option, "client-cert")

    def test_unknown(self) -> None:
        """
        Unknown names raise L{KeyError}.
        """
        config = _config({}, {})
        self.assertRaises(KeyError, config.clientCertificateSettings, "nope")
        self.assertRaises(KeyError, config.clientCertificateSettings, "v", "nope")

    def test_loaded(self) -> None:
        """
        A loaded configuration answers for each VIP and virtual host.
        """
        config = load(
            self,
            MINIMAL.replace('set ssl-certificate "cert"', 'set ssl-certificate "cert"\n        set empty-cert-action accept'),
            """
            config firewall access-proxy-virtual-host
                edit "h"
                    set host "h.example"
                    set client-cert disable
                next
            end
            """,
        )
        self.assertEqual(config.clientCertificateSettings("vip").emptyCertAction, "accept")
        self.assertFalse(config.clientCertificateSettings("vip", "h").clientCert)


class HelperTests(SynchronousTestCase):
    """
    Lookups other modules use.
    """

    def test_accessProxyOf(self) -> None:
        """
        The access proxy behind a VIP, or C{None}.
        """
        config = load(self, MINIMAL)
        self.assertIs(config.accessProxyOf("vip"), config.accessProxies["proxy"])
        self.assertIsNone(config.accessProxyOf("other"))

    def test_schedule(self) -> None:
        """
        Schedules are found by name in either table.
        """
        config = load(
            self,
            'config firewall schedule onetime\n    edit "o"\n        set start 00:00 2025/01/01\n'
            "        set end 00:00 2026/01/01\n    next\nend",
        )
        self.assertIsInstance(config.schedule("always"), RecurringSchedule)
        self.assertIsInstance(config.schedule("o"), OnetimeSchedule)
        self.assertRaises(KeyError, config.schedule, "nope")

    def test_builtins(self) -> None:
        """
        Every L{Config}, even one made in Python, has the built-in objects.
        """
        config = Config()
        self.assertEqual(list(config.addresses), ["all", "none"])
        self.assertEqual(list(config.recurringSchedules), ["always"])
        self.assertTrue(config.addresses["all"].builtin)

    def test_equalityIgnoresWhere(self) -> None:
        """
        Two configurations saying the same thing are equal, wherever and
        however they said it.
        """
        first = load(self, MINIMAL)
        second = load(self, "\n\n" + MINIMAL.replace("set action accept", "set action accept\n        set status enable"))
        self.assertEqual(first, second)
        self.assertNotEqual(
            first,
            load(self, MINIMAL.replace("set action accept", "set action deny")),
        )

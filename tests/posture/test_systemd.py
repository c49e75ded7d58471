"""
The hardened systemd unit C{etc/ztnagw.service}: systemd's own checker
accepts it and rates its exposure low, and it keeps the settings the
security documentation promises.

The one common hardening setting it lacks, C{MemoryDenyWriteExecute}, is
shown to stop the real daemon (pyOpenSSL's TLS callbacks are cffi
callbacks, which need writable and executable memory); that test fails the
day this changes, so that the setting can be added then.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.httpsfixture import Gateway
from tests.support import daemon as daemonModule

UNIT = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "ztnagw.service")

#: Settings the unit must keep (docs/security.md, "Process hygiene").
REQUIRED = {
    ("Service", "User"): "ztnagw",
    ("Service", "NoNewPrivileges"): "yes",
    ("Service", "CapabilityBoundingSet"): "CAP_NET_BIND_SERVICE",
    ("Service", "AmbientCapabilities"): "CAP_NET_BIND_SERVICE",
    ("Service", "ProtectSystem"): "strict",
    ("Service", "ReadWritePaths"): "/var/lib/ztnagw /var/log/ztnagw",
    ("Service", "ProtectHome"): "yes",
    ("Service", "PrivateTmp"): "yes",
    ("Service", "RestrictAddressFamilies"): "AF_INET AF_INET6 AF_UNIX",
    ("Service", "UMask"): "0077",
    ("Service", "StateDirectoryMode"): "0700",
}


def readUnit(path: str) -> dict[tuple[str, str], list[str]]:
    """
    The settings of a unit file: each (section, key)'s values in order.
    """
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


class UnitTests(TestCase):
    """
    The unit file itself.
    """

    def test_settings(self) -> None:
        """
        The hardening settings are there, with the promised values, and
        the system call filter is the service set.
        """
        settings = readUnit(UNIT)
        for key, value in REQUIRED.items():
            self.assertEqual(settings.get(key), [value], key)
        self.assertIn("@system-service", settings[("Service", "SystemCallFilter")])
        self.assertNotIn(("Service", "MemoryDenyWriteExecute"), settings)
        self.assertTrue(settings[("Service", "ExecStart")][0].split()[0].endswith("/twistd"))

    def unitForThisMachine(self) -> str:
        """
        A copy of the unit whose C{ExecStart} names this environment's
        twistd (systemd-analyze checks that the program exists).
        """
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "ztnagw.service")
        with open(UNIT, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("/opt/ztnagw/bin/twistd", twistd))
        return path

    def test_verify(self) -> None:
        """
        C{systemd-analyze verify} finds nothing wrong, and C{systemd-analyze
        security} rates the exposure at most 2.0 ("OK").
        """
        if shutil.which("systemd-analyze") is None:
            raise SkipTest("systemd-analyze is not installed")
        path = self.unitForThisMachine()
        verified = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        self.assertEqual((verified.returncode, verified.stderr), (0, ""))
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", path],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(security.returncode, 0, security.stdout + security.stderr)
        self.assertIn("Overall exposure level for ztnagw.service: 1.", security.stdout)


class MemoryDenyWriteExecuteTests(TestCase):
    """
    The daemon under the write-xor-execute policy.
    """

    def setUp(self) -> None:
        check = subprocess.run(
            [sys.executable, "-m", "tests.posture.mdwe", "--check"],
            capture_output=True,
            text=True,
            env=daemonModule.environment(),
            timeout=30,
        )
        if check.returncode != 0:
            raise SkipTest(f"this kernel has no PR_SET_MDWE: {check.stderr.strip()}")
        self.assertEqual(check.stdout.strip(), "refused")

    def test_cffiCallbacksNeedIt(self) -> None:
        """
        Under the policy the daemon cannot start: cffi cannot make
        pyOpenSSL's callbacks.  When this test fails, the daemon works
        under the policy: add C{MemoryDenyWriteExecute=yes} to the unit.
        """
        original = daemonModule.binary

        def underPolicy(name: str) -> list[str]:
            command = original(name)
            if name == "twistd" and command[0] != sys.executable:
                command = [sys.executable, *command]
            if name == "twistd":
                return [sys.executable, "-m", "tests.posture.mdwe", *command]
            return command

        self.patch(daemonModule, "binary", underPolicy)
        gateway = Gateway(self.mktemp())
        self.addCleanup(gateway.stop)
        with self.assertRaises(RuntimeError) as caught:
            gateway.start()
        self.assertIn("Cannot allocate write+execute memory for ffi.callback()", str(caught.exception))

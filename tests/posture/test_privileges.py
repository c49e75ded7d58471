"""
The daemon as C{etc/ztnagw.service} runs it: never root, started directly
as an unprivileged user with C{CAP_NET_BIND_SERVICE} as its only (ambient
and bounding) capability and no way to gain privileges, it binds a VIP
below port 1024 and serves devices.  C{setpriv} sets up exactly what the
unit's C{User=}, C{AmbientCapabilities=}, C{CapabilityBoundingSet=} and
C{NoNewPrivileges=} do, so this holds without systemd.

The other way, twistd C{--uid/--gid} dropping root after binding in
C{privilegedStartService}, is tested with one and several worker processes
by L{tests.integration.test_workers.PrivilegeTests}.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile

from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.httpsfixture import Gateway
from tests.integration.test_workers import _freePrivilegedPort, _interpreterFor
from tests.support import daemon as daemonModule

#: C{CAP_NET_BIND_SERVICE}'s bit in C{/proc/PID/status} capability masks.
NET_BIND_SERVICE = 1 << 10

_TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def processStatus(pid: int) -> dict[str, str]:
    """
    The fields of C{/proc/PID/status}.
    """
    with open(f"/proc/{pid}/status") as f:
        return {name: value.strip() for name, _, value in (line.partition(":") for line in f)}


class UnitModelTests(TestCase):
    """
    A daemon that never was root.
    """

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("starting a process as another user with a capability needs root")
        if shutil.which("setpriv") is None:
            raise SkipTest("setpriv (util-linux) is not installed")
        self.nobody = pwd.getpwnam("nobody")
        found = _interpreterFor(self.nobody.pw_uid, self.nobody.pw_gid)
        if found is None:
            raise SkipTest("no Python interpreter with this environment's packages runs as nobody")
        self.python, self.variables = found

    def test_onlyBindCapability(self) -> None:
        """
        Started as nobody with only C{CAP_NET_BIND_SERVICE}: the VIP on a
        port below 1024 serves a device and denies a client without a
        certificate; the process has no other capability, cannot gain one
        (no new privileges), and never had root's user or group ids.
        """
        # Under /tmp: nobody must be able to reach the directory.
        top = tempfile.mkdtemp(prefix="ztnagw-unit-")
        os.chmod(top, 0o755)
        self.addCleanup(shutil.rmtree, top, True)
        gateway = Gateway(os.path.join(top, "gateway"))
        self.addCleanup(gateway.stop)
        port = _freePrivilegedPort()
        with open(gateway.configPath) as f:
            text = f.read()
        text = text.replace(f"set extport {gateway.ports['MAIN']}\n", f"set extport {port}\n")
        with open(gateway.configPath, "w") as f:
            f.write(text)
        gateway.ports["MAIN"] = port
        device = gateway.issueDevice()
        # The state directory belongs to the service user (StateDirectory=).
        for directory, _, files in os.walk(gateway.directory):
            for name in [directory, *(os.path.join(directory, f) for f in files)]:
                os.chown(name, self.nobody.pw_uid, self.nobody.pw_gid, follow_symlinks=False)
        original = daemonModule.binary

        def asTheUnitDoes(name: str) -> list[str]:
            if name != "twistd":
                return original(name)
            return [
                "setpriv",
                "--reuid", str(self.nobody.pw_uid),
                "--regid", str(self.nobody.pw_gid),
                "--init-groups",
                "--inh-caps", "-all,+net_bind_service",
                "--ambient-caps", "-all,+net_bind_service",
                "--bounding-set", "-all,+net_bind_service",
                "--no-new-privs",
                "--",
                self.python, "-c", _TWISTD,
            ]

        self.patch(daemonModule, "binary", asTheUnitDoes)
        self.patch(daemonModule, "environment", lambda: dict(self.variables))
        gateway.start()
        assert gateway.daemon.process is not None
        status = processStatus(gateway.daemon.process.pid)
        self.assertEqual(status["Uid"].split(), [str(self.nobody.pw_uid)] * 4)
        self.assertEqual(status["Gid"].split(), [str(self.nobody.pw_gid)] * 4)
        self.assertEqual(int(status["CapEff"], 16), NET_BIND_SERVICE)
        self.assertEqual(int(status["CapBnd"], 16), NET_BIND_SERVICE)
        self.assertEqual(status["NoNewPrivs"], "1")
        got, fields, body, _ = gateway.curl("MAIN", "/headers", device)
        self.assertEqual(got, 200, body)
        self.assertEqual(gateway.curl("MAIN", "/headers")[1].get("x-ztna-error"), ["002"])
        # twistd ends itself with the signal that stopped it, once shut down.
        self.assertIn(gateway.daemon.stop(), (0, -15), gateway.daemon.log())
        self.assertIn("Server Shut Down.", gateway.daemon.log())

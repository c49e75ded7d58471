"""
The daemon binds its VIPs while it is still root, then drops privileges
(twistd C{--uid}/C{--gid}) and serves as C{nobody}: a VIP on a port below
1024 answers a device, the process has no root identity left, and the
registry in a state directory owned by C{nobody} works.

This needs root (CI runs as root) and the listeners bound in
C{privilegedStartService} (issue 8); it is skipped without either.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile

from twisted.application.service import Service
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.httpsfixture import Gateway
from tests.support import daemon as daemonModule


def privilegedPort() -> int:
    """
    A port below 1024 that nothing on 127.0.0.1 uses now.

    @raise SkipTest: none is free.
    """
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SkipTest("no free port below 1024")


def bindsWhilePrivileged() -> bool:
    """
    Whether the VIP service of the code under test binds in
    C{privilegedStartService}.
    """
    from ztnagw.gateway.vip import VipService

    return VipService.privilegedStartService is not Service.privilegedStartService


class DropTests(TestCase):
    """
    twistd C{--uid nobody --gid nogroup}.
    """

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("dropping privileges needs root")
        if not bindsWhilePrivileged():
            raise SkipTest("VIPs are not bound in privilegedStartService yet (issue 8)")
        self.nobody = pwd.getpwnam("nobody")

    def test_servesAsNobody(self) -> None:
        """
        A VIP on a privileged port serves a device after the drop; the
        daemon's real, effective, saved and file-system user and group ids
        are nobody's and it has no capability left; it stops cleanly.
        """
        # Under /tmp rather than trial's directory, which nobody may not be
        # allowed to traverse.
        top = tempfile.mkdtemp(prefix="ztnagw-nobody-")
        os.chmod(top, 0o755)
        self.addCleanup(shutil.rmtree, top, True)
        gateway = Gateway(os.path.join(top, "gateway"))
        self.addCleanup(gateway.stop)
        port = privilegedPort()
        with open(gateway.configPath) as f:
            text = f.read()
        text = text.replace(f"set extport {gateway.ports['MAIN']}\n", f"set extport {port}\n")
        with open(gateway.configPath, "w") as f:
            f.write(text)
        gateway.ports["MAIN"] = port
        device = gateway.issueDevice()
        # Everything the daemon writes after the drop: the state directory,
        # the traffic log beside the configuration.
        for top, directories, files in os.walk(gateway.directory):
            for name in [top, *(os.path.join(top, f) for f in files)]:
                os.chown(name, self.nobody.pw_uid, self.nobody.pw_gid)
        original = daemonModule.binary

        def dropping(name: str) -> list[str]:
            command = original(name)
            if name == "twistd":
                return command + ["--uid", str(self.nobody.pw_uid), "--gid", str(self.nobody.pw_gid)]
            return command

        self.patch(daemonModule, "binary", dropping)
        gateway.start()
        with open(f"/proc/{gateway.daemon.process.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        self.assertEqual(status["Uid"].split(), [str(self.nobody.pw_uid)] * 4)
        self.assertEqual(status["Gid"].split(), [str(self.nobody.pw_gid)] * 4)
        self.assertEqual(int(status["CapEff"].strip(), 16), 0)
        got, fields, body, _ = gateway.curl("MAIN", "/headers", device)
        self.assertEqual(got, 200, body)
        self.assertEqual(gateway.curl("MAIN", "/headers")[1].get("x-ztna-error"), ["002"])
        # twistd ends itself with the signal that stopped it, once shut down.
        self.assertIn(gateway.daemon.stop(), (0, -15), gateway.daemon.log())
        self.assertIn("Server Shut Down.", gateway.daemon.log())

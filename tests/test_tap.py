"""
Tests for L{ztnagw.tap}: the daemon refuses bad configurations and starts
and stops cleanly with a good one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support.daemon import Daemon, binary, environment, freePort
from ztnagw.tap import Options

_GOOD = """
config system global
    set state-dir "state"
end
config vpn certificate local
    edit "gateway"
        set certificate-file "gateway.crt"
        set private-key-file "gateway.key"
        set auto-generate enable
    next
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set https-port 18013
        set serial-number "FCTEMS8825007278"
    next
end
config firewall vip
    edit "V"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "any"
        set extport 11443
        set ssl-certificate "gateway"
    next
end
"""


class OptionsTests(SynchronousTestCase):
    """
    The plugin's options.
    """

    def test_defaultConfig(self) -> None:
        """
        Without C{--config} the default path (or C{$ZTNAGW_CONFIG}) is used.
        """
        options = Options()
        options.parseOptions([])
        self.assertTrue(options["config"])
        options = Options()
        options.parseOptions(["--config", "x.conf"])
        self.assertEqual(options["config"], "x.conf")


class DaemonTests(TestCase):
    """
    C{twistd -n ztnagw} as an operator runs it.
    """

    timeout = 120

    def writeConfig(self, text: str) -> str:
        """
        Write C{text} to a configuration file in a new directory.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "ztnagw.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def runDaemon(self, path: str) -> subprocess.CompletedProcess:
        """
        Run the daemon on C{path}, expecting it to exit by itself.
        """
        return subprocess.run(
            binary("twistd") + ["-n", "--pidfile=", "ztnagw", "--config", path],
            capture_output=True,
            text=True,
            env=environment(),
            timeout=60,
        )

    def test_refusesBadConfiguration(self) -> None:
        """
        A typo in an option name, a dangling reference, a port out of range
        and an unsupported object are all reported on stderr with
        C{file:line}, and the daemon exits with status 1.
        """
        bad = _GOOD.replace("set extport 11443", "set extport 65536").replace(
            'set ssl-certificate "gateway"', 'set ssl-certificate "missing"'
        ).replace("set auto-generate enable", "set auto-generat enable")
        bad += "config router static\n    edit 1\n    next\nend\n"
        path = self.writeConfig(bad)
        result = self.runDaemon(path)
        self.assertEqual(result.returncode, 1)
        lines = bad.splitlines()
        for what in ("auto-generat ", "65536", '"missing"', "router static"):
            line = next(n for n, text in enumerate(lines, 1) if what in text)
            self.assertIn(f"{path}:{line}:", result.stderr)

    def test_refusesMissingFile(self) -> None:
        """
        A configuration file that does not exist is a clear error.
        """
        result = self.runDaemon(os.path.abspath("nonexistent.conf"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot read configuration", result.stderr)

    def test_startsAndStops(self) -> None:
        """
        With a good configuration the daemon starts, creates its EMS CA,
        gateway certificate and registry in the state directory, and stops
        cleanly on SIGTERM.
        """
        path = self.writeConfig(_GOOD)
        daemon = Daemon(path, os.path.dirname(path))
        daemon.start()
        deadline = time.monotonic() + 30
        while "registry loaded" not in daemon.log():
            self.assertLess(time.monotonic(), deadline, daemon.log())
            time.sleep(0.05)
        # twistd ends itself with the signal it was stopped by, as a
        # well-behaved daemon does, once everything has shut down.
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertIn("Server Shut Down", daemon.log())
        state = os.path.join(os.path.dirname(path), "state")
        for name in ("ems1/ca.crt", "ems1/ca.key", "ems1/registry.sqlite", "gateway.crt", "gateway.key"):
            self.assertTrue(os.path.exists(os.path.join(state, name)), name)
        self.assertEqual(os.stat(os.path.join(state, "ems1/ca.key")).st_mode & 0o777, 0o600)

    def test_refusesAddressInUse(self) -> None:
        """
        A VIP whose address is taken stops the daemon at start with status
        1 and one line that names the VIP and the address, not a
        traceback; with worker processes too (the supervisor binds).
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for workers in (1, 2):
            text = _GOOD.replace("set extport 11443", f"set extport {port}").replace(
                "set https-port 18013", f"set https-port {freePort()}"
            ).replace('    set state-dir "state"\n', f'    set state-dir "state"\n    set workers {workers}\n')
            result = self.runDaemon(self.writeConfig(text))
            output = result.stdout + result.stderr
            self.assertEqual(result.returncode, 1, output)
            self.assertIn(f"cannot listen on 127.0.0.1:{port}", output)
            self.assertIn("Address already in use", output)
            self.assertNotIn("Traceback", output)

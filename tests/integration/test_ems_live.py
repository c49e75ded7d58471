"""
Registry changes take effect live, end to end: a device enrolled with the
real forwarder holds a keep-alive HTTPS connection through the real
daemon's access proxy; revoking it, quarantining it, removing the tag its
policy needs, or stopping its agent ends that connection, and its next
request is denied with the ZTNA code.  An agent that reports again brings
the device back.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time

from twisted.trial.unittest import TestCase

from tests.support.daemon import Daemon, binary, environment, freePort, runAdmin, waitForPort

SERIAL = "FCTEMS8825007278"
THRESHOLD = 10


def configuration(stateDir: str, ems: int, vip: int, web: int) -> str:
    """
    One EMS (threshold 10 s), one VIP in front of a web server, and a
    policy that admits devices with the tag C{Lab}.
    """
    return textwrap.dedent(
        f"""\
        config system global
            set hostname "gw1"
            set state-dir "{stateDir}"
        end
        config system interface
            edit "lo"
                set ip 127.0.0.1 255.0.0.0
                set type loopback
                set role lan
            next
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
                set https-port {ems}
                set serial-number "{SERIAL}"
                set out-of-sync-threshold {THRESHOLD}
            next
        end
        config firewall vip
            edit "ZTNA"
                set type access-proxy
                set server-type https
                set extip 127.0.0.1
                set extintf "lo"
                set extport {vip}
                set ssl-certificate "gateway"
            next
        end
        config firewall access-proxy
            edit "ZTNA"
                set vip "ZTNA"
                config api-gateway
                    edit 1
                        set service http
                        config realservers
                            edit 1
                                set ip 127.0.0.1
                                set port {web}
                            next
                        end
                    next
                end
            next
        end
        config firewall policy
            edit 1
                set name "lab-devices"
                set srcintf "lo"
                set dstintf "any"
                set action accept
                set srcaddr "all"
                set dstaddr "ZTNA"
                set schedule "always"
                set ztna-ems-tag "EMS1_ZTNA_Lab"
            next
        end
        """
    )


class LiveChangeTests(TestCase):
    """
    Each test enrolls a device, runs its agent and opens a keep-alive
    connection through the gateway.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        stateDir = os.path.join(self.base, "state")
        self.emsPort, self.vipPort, webPort = freePort(), freePort(), freePort()
        web = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(webPort), "--bind", "127.0.0.1", "--directory", self.base],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(self._stop, web)
        waitForPort(webPort)
        self.config = os.path.join(self.base, "ztnagw.conf")
        with open(self.config, "w") as f:
            f.write(configuration(stateDir, self.emsPort, self.vipPort, webPort))
        self.daemon = Daemon(self.config, self.base)
        self.daemon.start(waitPorts=[self.emsPort, self.vipPort])
        self.addCleanup(self.daemon.stop)
        self.env = environment()
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.base, "config")
        created = json.loads(self.admin("token", "create", "--json", "--tag", "Lab").stdout)
        result = subprocess.run(
            binary("ztnagw-forward")
            + ["enroll", "--ems", f"https://127.0.0.1:{self.emsPort}", "--token", created["token"], "--pin", created["enroll"]["pin"]],
            capture_output=True,
            env=self.env,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.profile = os.path.join(self.base, "config", "ztnagw-forward", "default")
        with open(os.path.join(self.profile, "profile.json")) as f:
            self.uid = json.load(f)["uid"]
        self.agent = self.startAgent()

    def _stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def startAgent(self) -> subprocess.Popen:
        """
        Run C{ztnagw-forward agent} for the device.
        """
        agent = subprocess.Popen(
            binary("ztnagw-forward") + ["agent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env
        )
        self.addCleanup(self._stop, agent)
        return agent

    def admin(self, *arguments: str) -> subprocess.CompletedProcess:
        """
        Run C{ztnagw ARGUMENTS}; it must succeed.
        """
        result = runAdmin(list(arguments), config=self.config)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result

    def connect(self, certificate: str | None = None, key: str | None = None) -> http.client.HTTPSConnection:
        """
        A keep-alive connection to the VIP with the device certificate (or
        the given one).
        """
        context = ssl.create_default_context(cafile=os.path.join(self.profile, "ca.crt"))
        context.load_cert_chain(
            certificate or os.path.join(self.profile, "device.crt"),
            key or os.path.join(self.profile, "device.key"),
        )
        connection = http.client.HTTPSConnection("127.0.0.1", self.vipPort, context=context, timeout=10)
        self.addCleanup(connection.close)
        return connection

    def get(self, connection: http.client.HTTPSConnection) -> tuple[int, str | None]:
        """
        GET / on C{connection}; the status and the ZTNA error code.
        """
        connection.request("GET", "/", headers={"Connection": "keep-alive"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-ZTNA-Error")

    def waitForClose(self, connection: http.client.HTTPSConnection, timeout: float) -> float:
        """
        Wait until the gateway closes C{connection}; how long it took.
        """
        sock = connection.sock
        assert sock is not None
        sock.settimeout(0.05)
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if sock.recv(1) == b"":
                    return time.monotonic() - start
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (ssl.SSLError, OSError):
                return time.monotonic() - start
        self.fail(f"the connection stayed open {timeout} s")

    def admitted(self) -> http.client.HTTPSConnection:
        """
        A connection on which the device was just admitted.
        """
        deadline = time.monotonic() + 10
        while True:
            connection = self.connect()
            status, code = self.get(connection)
            if status == 200:
                return connection
            # The agent's first report may still be on its way.
            self.assertLess(time.monotonic(), deadline, f"never admitted: {status} {code}")
            time.sleep(0.2)

    def assertEndedWith(self, command: tuple[str, ...], code: str) -> None:
        """
        Running the admin C{command} ends the open session within about a
        second, and a new request is denied with C{code}.
        """
        connection = self.admitted()
        self.admin(*command)
        # The index applies a change within 0.25 s; the session tracker
        # closes at once.  The bound leaves room for a loaded machine.
        self.assertLess(self.waitForClose(connection, 5), 2.0)
        self.assertEqual(self.get(self.connect()), (403, code))

    def test_revoke(self) -> None:
        """
        Revocation ends the session; the next request gets 063.
        """
        self.assertEndedWith(("endpoint", "revoke", self.uid), "063")

    def test_quarantine(self) -> None:
        """
        Quarantine ends the session; the next request gets 064.
        """
        self.assertEndedWith(("endpoint", "quarantine", self.uid), "064")

    def test_tagRemoved(self) -> None:
        """
        Removing the tag the policy needs ends the session; the next
        request gets 065.
        """
        self.assertEndedWith(("endpoint", "tag", self.uid, "remove", "Lab"), "065")

    def test_agentStops(self) -> None:
        """
        When the agent stops, the device goes offline after the threshold:
        the session ends and requests get 067; a new agent's report admits
        it again.
        """
        connection = self.admitted()
        self._stop(self.agent)
        self.waitForClose(connection, THRESHOLD + 10)
        self.assertEqual(self.get(self.connect()), (403, "067"))
        self.startAgent()
        self.admitted()

    def test_reenrolled(self) -> None:
        """
        After the device enrolls again, its previous certificate is refused
        through the gateway with 001, and a session opened with it ends;
        the new certificate is admitted.
        """
        import shutil

        old = os.path.join(self.base, "old")
        shutil.copytree(self.profile, old)
        connection = self.connect(os.path.join(old, "device.crt"), os.path.join(old, "device.key"))
        deadline = time.monotonic() + 10
        while self.get(connection)[0] != 200:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
            connection = self.connect(os.path.join(old, "device.crt"), os.path.join(old, "device.key"))
        created = json.loads(self.admin("token", "create", "--json").stdout)
        result = subprocess.run(
            binary("ztnagw-forward")
            + ["enroll", "--ems", f"https://127.0.0.1:{self.emsPort}", "--token", created["token"], "--pin", created["enroll"]["pin"]],
            capture_output=True,
            env=self.env,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.waitForClose(connection, 5)
        stale = self.connect(os.path.join(old, "device.crt"), os.path.join(old, "device.key"))
        self.assertEqual(self.get(stale), (403, "001"))
        self.admitted()

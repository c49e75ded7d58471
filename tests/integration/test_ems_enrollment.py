"""
The EMS role end to end: the real daemon (C{twistd -n ztnagw}), the real
admin command (C{ztnagw token ...}) and the real forwarder
(C{ztnagw-forward enroll/agent}), each its own process, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from typing import Any

from cryptography import x509
from twisted.trial.unittest import TestCase

from tests.support.daemon import Daemon, binary, environment, freePort, runAdmin
from tests.test_device import FakeIndex
from ztnagw.device import PresentedCertificate, VerdictKind, judgeDevice
from ztnagw.ems.tokens import listTokens, tokenUses
from ztnagw.registry.sqlite import SQLiteEndpointStore

SERIAL = "FCTEMS8825007278"


def configuration(stateDir: str, port: int, threshold: int = 180) -> str:
    """
    A gateway configuration with one EMS on 127.0.0.1:C{port}.
    """
    return textwrap.dedent(
        f"""\
        config system global
            set hostname "gw1"
            set state-dir "{stateDir}"
        end
        config endpoint-control fctems
            edit 1
                set status enable
                set server "127.0.0.1"
                set https-port {port}
                set serial-number "{SERIAL}"
                set out-of-sync-threshold {threshold}
            next
        end
        """
    )


class _Settings:
    serialNumber = SERIAL
    outOfSyncThreshold = 180.0


class EmsCase(TestCase):
    """
    A daemon running one EMS, and helpers to drive it.
    """

    threshold = 180

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.stateDir = os.path.join(self.base, "state")
        self.port = freePort()
        self.config = os.path.join(self.base, "ztnagw.conf")
        with open(self.config, "w") as f:
            f.write(configuration(self.stateDir, self.port, self.threshold))
        self.daemon = Daemon(self.config, self.base)
        self.daemon.start(waitPorts=[self.port])
        self.addCleanup(self.daemon.stop)
        self.url = f"https://127.0.0.1:{self.port}"
        self.env = environment()
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.base, "config")

    def admin(self, *arguments: str) -> subprocess.CompletedProcess:
        """
        Run C{ztnagw ARGUMENTS --config ...}; it must succeed.
        """
        result = runAdmin(list(arguments), config=self.config)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result

    def token(self, *options: str) -> tuple[str, str]:
        """
        Create a token with C{ztnagw token create}; its text and the pin.
        """
        created = json.loads(self.admin("token", "create", "--json", *options).stdout)
        return created["token"], created["enroll"]["pin"]

    def forward(self, *arguments: str, check: bool = False) -> subprocess.CompletedProcess:
        """
        Run C{ztnagw-forward ARGUMENTS}.
        """
        result = subprocess.run(
            binary("ztnagw-forward") + list(arguments), capture_output=True, env=self.env, timeout=120
        )
        if check:
            self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result

    def enroll(self, token: str, pin: str, *options: str, check: bool = True) -> subprocess.CompletedProcess:
        """
        Run C{ztnagw-forward enroll} against the daemon's EMS.
        """
        return self.forward("enroll", "--ems", self.url, "--token", token, "--pin", pin, *options, check=check)

    def records(self) -> list[Any]:
        """
        The registry's records, read by a separate connection.
        """
        listed = json.loads(self.admin("endpoint", "list", "--json").stdout)
        return listed

    def profile(self, name: str = "default") -> str:
        """
        A profile directory.
        """
        return os.path.join(self.base, "config", "ztnagw-forward", name)


class EnrollmentTests(EmsCase):
    """
    Devices enroll through the daemon with the real forwarder.
    """

    def test_enroll(self) -> None:
        """
        A token from C{ztnagw token create} and its pin enroll a device: the
        registry holds it (tags of the token), its key is private, the CA
        keys are private, the token is used up.
        """
        token, pin = self.token("--tag", "Lab", "--user", "alice")
        result = self.enroll(token, pin)
        profile = json.loads(self.forward("status", "--json", check=True).stdout)
        self.assertIn(profile["uid"].encode(), result.stdout)
        (record,) = self.records()
        self.assertEqual((record["uid"], record["certSerial"]), (profile["uid"], profile["certSerial"]))
        self.assertIn("Lab", record["tags"])
        for path in (
            os.path.join(self.profile(), "device.key"),
            os.path.join(self.stateDir, "ems1", "ca.key"),
            os.path.join(self.stateDir, "ems1", "listener.key"),
        ):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
        listed = self.admin("token", "list", "--all").stdout.decode()
        self.assertIn("used", listed)
        self.assertNotIn(token.split(".")[2], listed)
        self.assertIn('logid="9900069904"', self.daemon.log())

    def test_tokenRefusals(self) -> None:
        """
        A used, expired, revoked or wrong token enrolls nothing, each with
        its own error.
        """
        token, pin = self.token()
        self.enroll(token, pin, "--profile", "a")
        cases = []
        cases.append((token, "token-used"))
        expiring, _ = self.token("--expires", "1s")
        time.sleep(1.2)
        cases.append((expiring, "token-expired"))
        revoked, _ = self.token()
        self.admin("token", "revoke", revoked.split(".")[1])
        cases.append((revoked, "token-revoked"))
        cases.append((token[:-4] + "AAAA", "token-invalid"))
        for text, code in cases:
            result = self.enroll(text, pin, "--profile", "b", check=False)
            self.assertEqual(result.returncode, 1)
            self.assertIn(f"({code})".encode(), result.stderr)
        self.assertEqual(len(self.records()), 1)
        self.assertNotIn(token, self.daemon.log())

    def test_wrongPin(self) -> None:
        """
        A listener that does not have the pinned key gets no token.
        """
        token, pin = self.token()
        result = self.enroll(token, "sha256:" + "0" * 64, check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"pinned", result.stderr)
        self.assertEqual(self.records(), [])
        self.enroll(token, pin)

    def test_reenrollment(self) -> None:
        """
        Enrolling again from the same profile keeps the UID and changes the
        serial: the old certificate is then refused with 001.  Without the
        certificate, only a token made for the UID re-enrolls it.
        """
        token, pin = self.token("--uses", "3")
        self.enroll(token, pin)
        with open(os.path.join(self.profile(), "device.crt"), "rb") as f:
            old = x509.load_pem_x509_certificate(f.read())
        first = json.loads(self.forward("status", "--json", check=True).stdout)
        result = self.enroll(token, pin)
        self.assertIn(b"Re-enrolled", result.stdout)
        second = json.loads(self.forward("status", "--json", check=True).stdout)
        self.assertEqual(second["uid"], first["uid"])
        self.assertNotEqual(second["certSerial"], first["certSerial"])
        self.assertEqual(self.verdict(old).kind, VerdictKind.SERIAL_MISMATCH)
        self.assertEqual(self.verdict(old).error.code, "001")
        # A new profile asking for a new device gets a new UID with a plain
        # token; a token made for the UID re-enrolls it.
        fresh = self.enroll(token, pin, "--profile", "other", "--new-device")
        self.assertNotIn(first["uid"].encode(), fresh.stdout)
        forUid, _ = self.token("--uid", first["uid"])
        again = self.enroll(forUid, pin, "--profile", "lost", "--new-device")
        self.assertIn(first["uid"].encode(), again.stdout)

    def verdict(self, certificate: x509.Certificate) -> Any:
        """
        The device verdict for C{certificate} against the live registry.
        """
        store = SQLiteEndpointStore(os.path.join(self.stateDir, "ems1", "registry.sqlite"))
        try:
            records = store.list()
        finally:
            store.close()
        presented = PresentedCertificate.fromLeaf(certificate, 1, None)
        return judgeDevice(presented, {1: FakeIndex(records)}, {1: _Settings()}, time.time())


class OnlineTests(EmsCase):
    """
    Telemetry keeps a device online; a silent one goes offline after the
    threshold and comes back when it reports.
    """

    threshold = 10

    def status(self) -> str:
        """
        The summary line of C{diagnose endpoint ec-shm list}.
        """
        return self.admin("diagnose", "endpoint", "ec-shm", "list").stdout.decode().splitlines()[-1]

    def agent(self) -> subprocess.Popen:
        """
        Start C{ztnagw-forward agent}.
        """
        process = subprocess.Popen(
            binary("ztnagw-forward") + ["agent"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env
        )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(10)
            process.stdout.close()  # type: ignore[union-attr]

        self.addCleanup(stop)
        return process

    def waitFor(self, text: str, timeout: float) -> None:
        """
        Wait until the daemon's log contains C{text}.
        """
        deadline = time.monotonic() + timeout
        while text not in self.daemon.log():
            self.assertLess(time.monotonic(), deadline, f"never logged {text!r}:\n{self.daemon.log()}")
            time.sleep(0.2)

    def test_offlineAndBack(self) -> None:
        """
        With the agent running the device stays online past the threshold;
        once it stops, the device is offline after the threshold (logged);
        a new agent brings it back (logged).
        """
        token, pin = self.token()
        self.enroll(token, pin)
        agent = self.agent()
        time.sleep(12)
        self.assertIn("online records: 1; offline records: 0", self.status())
        self.assertNotIn('logid="9900069906"', self.daemon.log())
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(agent.wait(10), 0)
        self.waitFor('logid="9900069906"', 20)
        self.assertIn("online records: 0; offline records: 1", self.status())
        self.agent()
        self.waitFor('logid="9900069907"', 20)
        self.assertIn("online records: 1; offline records: 0", self.status())


_KILL_INSIDE = """
import os, sys, time
from ztnagw.ems.ca import loadCertificateAuthority
from ztnagw.ems.enrollment import Enroller, EnrollmentRequest
from ztnagw.ems.api import DeviceReport
from ztnagw.registry.sqlite import SQLiteEndpointStore
from tests.ems.test_enrollment import csrPem

stateDir, token = sys.argv[1], sys.argv[2]
store = SQLiteEndpointStore(os.path.join(stateDir, "ems1", "registry.sqlite"))

def inside(enrolled):
    # The record and the token use are written, not committed.
    sys.stdout.write(enrolled.record.uid + "\\n")
    sys.stdout.flush()
    time.sleep(60)

enroller = Enroller(loadCertificateAuthority(stateDir, 1), "FCTEMS8825007278", "0" * 32, beforeCommit=inside)
enroller.enroll(store, EnrollmentRequest(token, csrPem(), None, DeviceReport()), "192.0.2.1", None, time.time())
"""


class CrashTests(EmsCase):
    """
    A process killed during enrollment leaves no half-enrolled device.
    """

    def consistent(self) -> tuple[int, int]:
        """
        Check that every token use has its record and every record its use;
        return (records, uses).
        """
        store = SQLiteEndpointStore(os.path.join(self.stateDir, "ems1", "registry.sqlite"))
        try:
            records = {r.uid: r for r in store.list()}
            with store.transaction() as t:
                tokens = listTokens(t.cursor)
                uses = [use for token in tokens for use in tokenUses(t.cursor, token.id)]
                counted = sum(token.usesCount for token in tokens)
        finally:
            store.close()
        self.assertEqual(counted, len(uses))
        for uid, serial, _, _ in uses:
            self.assertIn(uid, records)
        self.assertEqual({uid for uid, _, _, _ in uses}, set(records))
        return len(records), len(uses)

    def test_killedInsideTransaction(self) -> None:
        """
        SIGKILL while the enrollment transaction holds the record and the
        token use: neither is there afterwards, and the token still works.
        """
        token, pin = self.token()
        env = environment()
        process = subprocess.Popen(
            [sys.executable, "-c", _KILL_INSIDE, self.stateDir, token], stdout=subprocess.PIPE, env=env
        )
        uid = process.stdout.readline().decode().strip()  # type: ignore[union-attr]
        self.assertEqual(len(uid), 32)
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]
        self.assertEqual(self.consistent(), (0, 0))
        self.enroll(token, pin)
        self.assertEqual(self.consistent(), (1, 1))

    def test_daemonKilledWhileEnrolling(self) -> None:
        """
        SIGKILL the daemon while many devices enroll at once: after a
        restart, every device that was told it enrolled is registered,
        and every token use has its record (and every record its use).
        """
        token, pin = self.token("--uses", "100")
        processes = []
        for number in range(24):
            processes.append(
                subprocess.Popen(
                    binary("ztnagw-forward")
                    + ["enroll", "--ems", self.url, "--token", token, "--pin", pin, "--profile", f"d{number}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self.env,
                )
            )
        # Kill once a few enrollments are through and others still run.
        deadline = time.monotonic() + 60
        while sum(1 for p in processes if p.poll() == 0) < 3:
            self.assertLess(time.monotonic(), deadline, "no enrollment succeeded")
            time.sleep(0.01)
        self.daemon.kill()
        told = []
        for process in processes:
            out, _ = process.communicate(timeout=60)
            if process.returncode == 0:
                told.append(out.decode())
        records, uses = self.consistent()
        self.assertGreaterEqual(records, len(told))
        # The registry is whole: the daemon starts again on it, and lists
        # every device that was told it enrolled.
        self.daemon = Daemon(self.config, self.base)
        self.daemon.start(waitPorts=[self.port])
        self.addCleanup(self.daemon.stop)
        registered = {record["uid"] for record in self.records()}
        for output in told:
            uid = [line.split()[-1] for line in output.splitlines() if line.strip().startswith("UID:")][0]
            self.assertIn(uid, registered)

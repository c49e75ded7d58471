"""
Tests for L{ztnagw.forwarder.agent} and L{ztnagw.forwarder.facts}.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.ems.fixtures import RunningEms
from ztnagw.ems.api import DeviceReport, parseDeviceReport
from ztnagw.forwarder.agent import MAX_RETRY, TelemetryService, parsePostureCommand
from ztnagw.forwarder.enroll import EnrollmentPlan, enroll
from ztnagw.forwarder.facts import (
    POSTURE_STATUS_FACT,
    _osRelease,
    _rootEncrypted,
    builtinFacts,
    collectReport,
    parsePostureOutput,
    runPostureCommand,
)
from ztnagw.tls.client import parsePin


class ServiceTests(TestCase):
    """
    L{TelemetryService} keeps reporting while it runs.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        base = os.path.abspath(self.mktemp())
        self.ems = RunningEms(os.path.join(base, "state"))
        yield self.ems.start()
        self.addCleanup(self.ems.stop)
        plan = EnrollmentPlan(
            emsUrl=self.ems.url,
            host="127.0.0.1",
            port=self.ems.port,
            token=self.ems.token(),
            pin=parsePin(self.ems.pin),
            caCertificates=(),
            directory=os.path.join(base, "profile"),
            existing=None,
            gateway=None,
        )
        self.profile = yield enroll(reactor, plan, DeviceReport())
        self.results: list[Any] = []

    def service(self, **kwargs: Any) -> TelemetryService:
        """
        A telemetry service for the enrolled profile, recording results.
        """
        kwargs.setdefault("collect", lambda facts: DeviceReport(hostName="pc", facts=facts))
        service = TelemetryService(reactor, self.profile, onResult=self.results.append, **kwargs)
        return service

    @inlineCallbacks
    def waitFor(self, count: int, timeout: float = 10.0) -> Any:
        """
        Wait until C{count} results arrived.
        """
        deadline = reactor.seconds() + timeout
        while len(self.results) < count:
            self.assertLess(reactor.seconds(), deadline, "the agent did not report in time")
            yield deferLater(reactor, 0.02, lambda: None)

    @inlineCallbacks
    def test_periodic(self) -> Any:
        """
        The service reports at once, then at its interval; stopping it
        stops the reports.
        """
        service = self.service(interval=0.1)
        service.startService()
        yield self.waitFor(3)
        yield service.stopService()
        count = len(self.results)
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(self.results), count)
        self.assertTrue(all(result.ok for result in self.results))
        self.assertEqual(service.reports, count)
        record = self.ems.store.get(self.profile.uid)
        self.assertEqual(record.hostName, "pc")

    @inlineCallbacks
    def test_followsReenrollment(self) -> Any:
        """
        After the device enrolls again (new certificate in the same
        profile), a running service reports with the new certificate.
        """
        service = self.service()
        first = yield service.reportNow()
        self.assertTrue(first.ok)
        plan = EnrollmentPlan(
            emsUrl=self.ems.url,
            host="127.0.0.1",
            port=self.ems.port,
            token=self.ems.token(),
            pin=parsePin(self.ems.pin),
            caCertificates=(),
            directory=self.profile.directory,
            existing=self.profile,
            gateway=None,
        )
        again = yield enroll(reactor, plan, DeviceReport())
        self.assertNotEqual(again.certSerial, self.profile.certSerial)
        yield self.ems.waitForRecord(again.uid, lambda record: record.certSerial == again.certSerial)
        second = yield service.reportNow()
        self.assertTrue(second.ok, second.error)

    @inlineCallbacks
    def test_followsEms(self) -> Any:
        """
        Without C{--interval}, the service reports as often as the EMS
        asks (a third of its threshold).
        """
        service = self.service()
        result = yield service.reportNow()
        self.assertEqual((result.ok, result.nextIn, service.interval), (True, 3.0, 3.0))

    @inlineCallbacks
    def test_posture(self) -> Any:
        """
        The posture command's facts go into the report.
        """
        command = [sys.executable, "-c", "import json; print(json.dumps({'edr.agent': 'ok', 'av.age': 2}))"]
        service = self.service(postureCommand=command)
        result = yield service.reportNow()
        self.assertTrue(result.ok)
        facts = self.ems.store.get(self.profile.uid).facts
        self.assertEqual((facts["edr.agent"], facts["av.age"], facts[POSTURE_STATUS_FACT]), ("ok", "2", "ok"))

    @inlineCallbacks
    def test_refusedSlowly(self) -> Any:
        """
        A device the EMS refuses (revoked) retries only slowly.
        """
        import attrs

        self.ems.store.update(self.profile.uid, lambda r: attrs.evolve(r, revoked=True))
        yield self.ems.waitForRecord(self.profile.uid, lambda record: record.revoked)
        result = yield self.service(interval=1).reportNow()
        self.assertEqual((result.ok, result.error.ztnaCode, result.nextIn), (False, "063", MAX_RETRY))

    @inlineCallbacks
    def test_unreachableSooner(self) -> Any:
        """
        An EMS that cannot be reached is tried again sooner than the
        regular interval.
        """
        service = self.service(interval=30)
        yield self.ems.stop()
        result = yield service.reportNow()
        self.assertEqual((result.ok, result.error.code), (False, "unreachable"))
        self.assertLess(result.nextIn, 30)
        yield self.ems.start()


class PostureCommandTests(TestCase):
    """
    L{runPostureCommand} runs the administrator's check within bounds.
    """

    def posture(self, code: str, **kwargs: Any) -> Deferred[dict[str, str]]:
        """
        Run a Python snippet as the posture command.
        """
        return runPostureCommand(reactor, [sys.executable, "-c", code], **kwargs)

    @inlineCallbacks
    def test_facts(self) -> Any:
        """
        A JSON object of facts is read, with the status fact.
        """
        facts = yield self.posture("print('{\"disk.encrypted\": true, \"score\": 80}')")
        self.assertEqual(facts, {"disk.encrypted": "true", "score": "80", POSTURE_STATUS_FACT: "ok"})

    @inlineCallbacks
    def test_failures(self) -> Any:
        """
        A failing, silent, slow, chatty or missing command gives only the
        status fact, saying what went wrong.
        """
        cases = [
            (self.posture("import sys; print('{}'); sys.exit(3)"), "failed"),
            (self.posture("print('not json')"), "invalid"),
            (self.posture("import time; time.sleep(30)", timeout=0.5), "timeout"),
            (self.posture("import sys; sys.stdout.write('x' * 200000)", limit=1000), "invalid"),
            (runPostureCommand(reactor, ["/nonexistent/posture-check"]), "failed"),
            (self.posture("import sys; print(sys.stdin.read() or '{}')"), "ok"),
        ]
        for d, outcome in cases:
            facts = yield d
            self.assertEqual(facts[POSTURE_STATUS_FACT], outcome)


class PostureOutputTests(SynchronousTestCase):
    """
    L{parsePostureOutput} reads a posture command's JSON strictly.
    """

    def test_refused(self) -> None:
        """
        Not an object, bad names, nested values, too many facts.
        """
        for output in (b"[]", b'{"bad name": 1}', b'{"a": {"b": 1}}', b'{"a": 1.5}', b"\xff", json.dumps({f"f{i}": 1 for i in range(60)}).encode()):
            self.assertRaises(ValueError, parsePostureOutput, output)

    @given(st.binary(max_size=100) | st.text(max_size=60).map(str.encode))
    def test_anyOutput(self, output: bytes) -> None:
        """
        Any output is facts the EMS accepts, or a L{ValueError}.
        """
        try:
            facts = parsePostureOutput(output)
        except ValueError:
            return
        parseDeviceReport({"facts": facts})

    def test_split(self) -> None:
        """
        The command is split like a shell would, without a shell.
        """
        self.assertEqual(parsePostureCommand("check --dir '/a b'"), ["check", "--dir", "/a b"])
        self.assertRaises(ValueError, parsePostureCommand, "  ")


class FactsTests(SynchronousTestCase):
    """
    What the agent reports about this machine.
    """

    def test_report(self) -> None:
        """
        The report of this machine is one the EMS accepts, names the
        forwarder's version, and keeps the built-in facts over the posture
        command's.
        """
        report = collectReport({"os.kernel": "forged", "custom": "1"})
        self.assertEqual(parseDeviceReport(report.toJson()), report)
        self.assertEqual(report.facts["custom"], "1")
        self.assertNotEqual(report.facts.get("os.kernel"), "forged")
        from ztnagw import __version__

        self.assertEqual(report.clientVersion, __version__)
        self.assertLessEqual(set(builtinFacts()), {"os.kernel", "os.distribution", "os.distribution-version", "disk.root-encrypted", "secure-boot"})

    def root(self, mountinfo: str, devices: dict[str, str]) -> str:
        """
        A fake root: a mount table and block devices (path to dm uuid).
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "proc", "self"))
        with open(os.path.join(root, "proc", "self", "mountinfo"), "w") as f:
            f.write(mountinfo)
        for path, uuid in devices.items():
            directory = os.path.join(root, "sys", "dev", "block", path)
            os.makedirs(os.path.join(directory, "dm"), exist_ok=True)
            if uuid:
                with open(os.path.join(directory, "dm", "uuid"), "w") as f:
                    f.write(uuid)
        return root

    def test_rootEncrypted(self) -> None:
        """
        A root on dm-crypt (directly, or through LVM) is encrypted; on a
        plain device it is not; on an overlay nobody can tell.
        """
        line = "27 1 {} / / rw,relatime - ext4 /dev/x rw\n"
        crypt = self.root(line.format("253:0"), {"253:0": "CRYPT-LUKS2-abc-root"})
        self.assertEqual(_rootEncrypted(crypt), "true")
        lvm = self.root(line.format("253:1"), {"253:1": "LVM-xyz", "253:1/slaves/dm-0": "CRYPT-LUKS2-abc"})
        self.assertEqual(_rootEncrypted(lvm), "true")
        plain = self.root(line.format("8:1"), {"8:1": ""})
        self.assertEqual(_rootEncrypted(plain), "false")
        overlay = self.root(line.format("0:31"), {})
        self.assertIsNone(_rootEncrypted(overlay))
        self.assertIsNone(_rootEncrypted(os.path.abspath(self.mktemp())))

    def test_osRelease(self) -> None:
        """
        C{/etc/os-release} is read as shell-style assignments.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "etc"))
        with open(os.path.join(root, "etc", "os-release"), "w") as f:
            f.write('ID=debian\nVERSION_ID="12"\n# comment\nNAME=\'Debian GNU/Linux\'\n')
        self.assertEqual(_osRelease(root), {"ID": "debian", "VERSION_ID": "12", "NAME": "Debian GNU/Linux"})

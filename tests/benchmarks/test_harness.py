"""
Tests for L{benchmarks.harness}, L{benchmarks.processes} and
L{benchmarks.machine}: options, CPU plans, process groups, tool checks.
"""

from __future__ import annotations

import os
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from benchmarks.harness import Options, iperfNotStarted, parseOptions, planCpus
from benchmarks.machine import TOOLS, missingPackages
from benchmarks.processes import ProcessFailed, ProcessGroup, freePort, processTree, rssKiB, waitForPort


def _running(pid: int) -> bool:
    """
    Whether C{pid} exists and is not a zombie awaiting its parent.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return ") Z" not in f.read()
    except OSError:
        return False


class IperfRetryTests(SynchronousTestCase):
    """
    Tests for L{iperfNotStarted}: which iperf3 failures are tried again.
    """

    def test_notStarted(self) -> None:
        """
        A control connection refused or reset before the test began is
        worth one more try.
        """
        for error in [
            "unable to receive control message: Connection reset by peer",
            "unable to send control message: Bad file descriptor",
            "unable to connect to server: Connection refused",
            "the server is busy running a test. try again later",
        ]:
            self.assertTrue(iperfNotStarted(error), error)

    def test_failedDuringTest(self) -> None:
        """
        A failure once data flowed is reported, not hidden by a retry.
        """
        for error in [
            "error - control socket has closed unexpectedly",
            "unable to write to stream socket: Broken pipe",
            "",
        ]:
            self.assertFalse(iperfNotStarted(error), error)


class OptionTests(SynchronousTestCase):
    """
    Tests for L{parseOptions} and L{Options.selects}.
    """

    def test_defaults(self) -> None:
        """
        By default: three runs of five seconds, one worker, idle memory at
        1,000 and 10,000, profiles.
        """
        options = parseOptions([])
        self.assertEqual((options.runs, options.duration, options.workers), (3, 5, 1))
        self.assertEqual(options.idleCounts, (1000, 10000))
        self.assertTrue(options.profile)

    def test_quick(self) -> None:
        """
        --quick: one short run of each figure, no profile.
        """
        options = parseOptions(["--quick"])
        self.assertEqual((options.runs, options.duration, options.profile), (1, 2, False))
        self.assertEqual(parseOptions(["--quick", "--duration", "4"]).duration, 4)

    def test_only(self) -> None:
        """
        --only takes systems and figure groups, comma-separated or repeated;
        a system or group not named is not selected, other kinds are.
        """
        options = parseOptions(["--only", "nginx,keepalive", "--only", "ztnagw"])
        self.assertEqual(options.only, ("nginx", "keepalive", "ztnagw"))
        self.assertTrue(options.selects("nginx", "keepalive"))
        self.assertFalse(options.selects("haproxy"))
        self.assertFalse(options.selects("bulk"))
        self.assertTrue(Options(only=("idle",)).selects("stunnel", "idle"))

    def test_refused(self) -> None:
        """
        Unknown names and impossible figures are refused.
        """
        for argv in (["--only", "envoy"], ["--workers", "0"], ["--duration", "0"]):
            self.assertRaises(SystemExit, parseOptions, argv)


class CpuPlanTests(SynchronousTestCase):
    """
    Tests for L{planCpus}.
    """

    def test_enoughCores(self) -> None:
        """
        With a core for the load, one for the origin and one per worker,
        each gets its own.
        """
        plan, text = planCpus(8, 4)
        self.assertEqual(plan, {"load": "0", "origin": "1", "gateway": "2-5"})
        self.assertIn("pinned", text)
        self.assertEqual(planCpus(3, 1)[0]["gateway"], "2")

    def test_shared(self) -> None:
        """
        On two cores nothing is pinned and the report says the cores are
        shared.
        """
        plan, text = planCpus(2, 1)
        self.assertEqual(set(plan.values()), {None})
        self.assertIn("shared", text)


class ProcessGroupTests(SynchronousTestCase):
    """
    Tests for L{ProcessGroup}.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.group = ProcessGroup(self.directory)
        self.addCleanup(self.group.stopAll)

    def test_stopAllEndsChildren(self) -> None:
        """
        L{ProcessGroup.stopAll} ends each process and the processes it
        started itself.
        """
        started = self.group.start("sleeper", ["sh", "-c", "sleep 60 & sleep 60 & wait"])
        deadline = time.monotonic() + 5
        while len(processTree(started.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        tree = processTree(started.pid)
        self.assertEqual(len(tree), 3)
        self.group.stopAll()
        self.assertEqual(self.group.started, [])
        # SIGKILL is delivered asynchronously: allow the kernel a moment.
        deadline = time.monotonic() + 5
        alive = list(tree)
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if _running(pid)]
            time.sleep(0.02)
        self.assertEqual(alive, [])

    def test_serverReady(self) -> None:
        """
        L{ProcessGroup.startServer} returns once the port accepts, and its
        memory can be read.
        """
        port = freePort()
        server = self.group.startServer("server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                                   str(port)], port)
        self.assertGreater(rssKiB(server.pid), 1000)

    def test_serverDied(self) -> None:
        """
        A server that exits instead of listening is reported with its log.
        """
        error = self.assertRaises(
            ProcessFailed, self.group.startServer, "broken", ["sh", "-c", "echo no such thing; exit 3"], freePort()
        )
        self.assertIn("no such thing", str(error))
        self.assertEqual(self.group.started, [])

    def test_runOutput(self) -> None:
        """
        L{ProcessGroup.run} returns standard output and reports failures.
        """
        self.assertEqual(self.group.run("echo", ["echo", "hello"], timeout=10), "hello\n")
        self.assertRaises(ProcessFailed, self.group.run, "false", ["false"], timeout=10)
        self.assertRaises(ProcessFailed, self.group.run, "slow", ["sleep", "10"], timeout=0.2)
        self.assertEqual(self.group.started, [])

    def test_waitForPort(self) -> None:
        """
        Waiting for a port nobody listens on ends with an error.
        """
        self.assertRaises(ProcessFailed, waitForPort, freePort(), 0.3)
        self.assertRaises(ProcessFailed, waitForPort, freePort(), 5, lambda: False)


class MachineTests(SynchronousTestCase):
    """
    Tests for L{missingPackages}.
    """

    def test_missing(self) -> None:
        """
        Missing programs and headers map to their Debian packages, once
        each.
        """
        self.assertEqual(missingPackages(lambda program: "/usr/bin/" + program, lambda path: True), [])
        missing = missingPackages(lambda program: None if program in ("wrk", "stunnel4") else "/x",
                                  lambda path: False)
        self.assertEqual(missing, ["libssl-dev", "stunnel4", "wrk"])
        self.assertEqual(set(missingPackages(lambda p: None, lambda p: True)), set(TOOLS.values()))

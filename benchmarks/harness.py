# -*- test-case-name: tests.benchmarks.test_harness -*-
"""
The side-by-side benchmark: ztnagw against nginx, HAProxy and stunnel.

One command (C{python -m benchmarks}, or C{benchmarks/run}) installs what is
missing, makes a throwaway PKI, starts one origin (nginx with a 1 KiB and a
1 MiB file, an echo server and an iperf3 sink), then measures each system
in turn with the same load generators and the same certificates, and writes
a Markdown table and a JSON document under C{benchmarks/results/}.  See
C{docs/performance.md} for what each figure means.

Every process it starts belongs to a L{ProcessGroup} that is emptied in a
C{finally} block, also on Ctrl-C and SIGTERM; every address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from attrs import frozen

from benchmarks import configs
from benchmarks.machine import ToolsMissing, ensureTools, machineFacts, versions
from benchmarks.pki import BenchPki, makeBenchPki
from benchmarks.processes import (
    ProcessFailed,
    ProcessGroup,
    Started,
    cpuSeconds,
    freePort,
    processTree,
    raiseOpenFileLimit,
    rssKiB,
)
from benchmarks.profiling import ProfileError, pySpyCommand, renderSummary, summarise
from benchmarks.report import Results, dumpJson, renderMarkdown
from benchmarks.wrk import LoadGeneratorError, WrkResult, buildShim, parseWrkOutput, wrkCommand

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
MIB = 1024 * 1024

SYSTEM_NAMES = ("ztnagw", "nginx", "haproxy", "stunnel", "direct")
GROUP_NAMES = ("keepalive", "bulk", "handshake", "tunnel", "setup", "idle", "workers")


class BenchmarkError(Exception):
    """
    The benchmark cannot run at all (not one figure could be measured).
    """


@frozen
class Options:
    """
    What to measure and how long.

    @ivar runs: runs per figure (the median is reported).
    @ivar duration: seconds per load run.
    @ivar only: system and figure-group names to restrict the run to
        (empty: everything).
    @ivar workers: ztnagw worker processes (the C{workers} option).
    @ivar idleCounts: numbers of idle connections at which memory is read.
    @ivar setupSamples: tunnel setups per latency run.
    @ivar profile: record py-spy profiles of ztnagw under loads 1, 2 and 4.
    @ivar python: interpreter that runs ztnagw (and its forwarder): the
        harness's own, or a PyPy environment's.
    """

    runs: int = 3
    duration: int = 5
    only: tuple[str, ...] = ()
    workers: int = 1
    idleCounts: tuple[int, ...] = (1000, 10000)
    setupSamples: int = 200
    profile: bool = True
    python: str = sys.executable

    def selects(self, *names: str) -> bool:
        """
        Whether the run covers C{names}: each of them that is a system name
        or group name must be asked for, when any of that kind is.
        """
        systems = [n for n in self.only if n in SYSTEM_NAMES]
        groups = [n for n in self.only if n in GROUP_NAMES]
        for name in names:
            if name in SYSTEM_NAMES and systems and name not in systems:
                return False
            if name in GROUP_NAMES and groups and name not in groups:
                return False
        return True


def parseOptions(argv: Sequence[str]) -> Options:
    """
    Read the command line.

    @raise SystemExit: bad options (argparse prints why).
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark ztnagw side by side with nginx, HAProxy and stunnel "
        "(loopback only; about 10 minutes; results under benchmarks/results/).",
    )
    parser.add_argument("--quick", action="store_true", help="one short run of each figure (smoke check)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="measure only these systems (" + ", ".join(SYSTEM_NAMES) + ") and/or figure groups ("
        + ", ".join(GROUP_NAMES) + "); repeatable or comma-separated",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="ztnagw worker processes (default 1)")
    parser.add_argument("--duration", type=int, default=None, metavar="S", help="seconds per load run (default 5)")
    parser.add_argument("--runs", type=int, default=None, metavar="N", help="runs per figure (default 3)")
    parser.add_argument("--no-profile", action="store_true", help="do not record py-spy profiles of ztnagw")
    parser.add_argument(
        "--python",
        default=sys.executable,
        metavar="PATH",
        help="interpreter whose environment runs ztnagw (for example a PyPy venv's bin/pypy3)",
    )
    options = parser.parse_args(list(argv))
    only = tuple(n.strip() for item in options.only for n in item.split(",") if n.strip())
    unknown = [n for n in only if n not in SYSTEM_NAMES + GROUP_NAMES]
    if unknown:
        parser.error("unknown --only name(s): " + ", ".join(unknown))
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    duration = options.duration if options.duration is not None else (2 if options.quick else 5)
    runs = options.runs if options.runs is not None else (1 if options.quick else 3)
    if duration < 1 or runs < 1:
        parser.error("--duration and --runs must be at least 1")
    return Options(
        runs=runs,
        duration=duration,
        only=only,
        workers=options.workers,
        idleCounts=(1000,) if options.quick else (1000, 10000),
        setupSamples=50 if options.quick else 200,
        profile=not options.no_profile and not options.quick,
        python=options.python,
    )


def planCpus(cores: int, workers: int) -> tuple[dict[str, str | None], str]:
    """
    Which CPUs the load generators, the origin and the gateway get.

    @return: role (C{load}, C{origin}, C{gateway}) → C{taskset} CPU list
        (C{None}: not pinned), and a sentence for the report.
    """
    if cores >= workers + 2:
        gateway = "2" if workers == 1 else f"2-{workers + 1}"
        return (
            {"load": "0", "origin": "1", "gateway": gateway},
            f"pinned with taskset: load generators on CPU 0, origin on CPU 1, gateway on CPU {gateway}",
        )
    return (
        {"load": None, "origin": None, "gateway": None},
        f"not pinned: {cores} cores are shared by the load generators, the origin and the gateway "
        f"({workers + 2} would be needed to give each its own)",
    )


#: What iperf3 says when its test never started: the control connection
#: was refused or reset before any data flowed (the sink was still
#: recovering from a readiness probe that connected and left).
_NOT_STARTED = (
    "unable to receive control message",
    "unable to send control message",
    "unable to connect to server",
    "the server is busy",
)


def iperfNotStarted(error: str) -> bool:
    """
    Whether an iperf3 error means the test never started, so that running
    it again measures the same thing.
    """
    lowered = error.lower()
    return any(text in lowered for text in _NOT_STARTED)


def _log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def _command(python: str, name: str) -> str:
    # Console scripts live beside the interpreter of their environment.
    candidate = os.path.join(os.path.dirname(python), name)
    if os.path.exists(candidate):
        return candidate
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"cannot find the {name} command beside {python} or on PATH")
    return found


class Bench:
    """
    One benchmark run: the processes, the results, and the measurements.
    """

    def __init__(
        self, options: Options, runDirectory: str, openFiles: int, log: Callable[[str], None] = _log
    ) -> None:
        self.options = options
        self.openFiles = openFiles
        self.runDirectory = runDirectory
        self.log = log
        for sub in ("logs", "tmp", "www", "conf", "state", "profiles"):
            os.makedirs(os.path.join(runDirectory, sub), exist_ok=True)
        self.group = ProcessGroup(os.path.join(runDirectory, "logs"))
        self.results = Results()
        self.cpus, pinning = planCpus(os.cpu_count() or 1, options.workers)
        self.results.facts["pinning"] = pinning
        self.pki: BenchPki
        self.shim: str
        self.ports: dict[str, int] = {}
        self.profiles: list[tuple[str, str]] = []
        self.starts = 0

    # -- infrastructure -------------------------------------------------

    def conf(self, name: str, text: str) -> str:
        """
        Write a generated configuration file; return its path.
        """
        path = os.path.join(self.runDirectory, "conf", name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def prepare(self) -> None:
        """
        PKI, shim, origin files; then start the origin, the echo server and
        the iperf3 sink.
        """
        self.pki = makeBenchPki(os.path.join(self.runDirectory, "pki"), deviceCount=2)
        self.shim = buildShim(os.path.join(self.runDirectory, "tmp"))
        www = os.path.join(self.runDirectory, "www")
        for name, size in configs.ORIGIN_FILES.items():
            with open(os.path.join(www, name), "wb") as f:
                f.write(os.urandom(size))
        # Workers of a root nginx run as nobody: let them read the files.
        for path in (self.runDirectory, www):
            os.chmod(path, 0o755)
        for name in configs.ORIGIN_FILES:
            os.chmod(os.path.join(www, name), 0o644)
        for name in ("origin", "echo", "iperf"):
            self.ports[name] = freePort()
        origin = self.conf("origin-nginx.conf", configs.originNginx(self.runDirectory, www, self.ports["origin"], self.openFiles))
        self.group.startServer("origin", ["nginx", "-c", origin, "-e", os.path.join(self.runDirectory, "logs", "origin-error.log")],
                               self.ports["origin"], cpus=self.cpus["origin"])
        self.group.startServer(
            "echo",
            [sys.executable, "-m", "benchmarks.tools", "echo", "--port", str(self.ports["echo"])],
            self.ports["echo"],
            cpus=self.cpus["origin"],
            cwd=os.path.dirname(HERE),
        )
        self.group.startServer(
            "iperf3-server", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.ports["iperf"])],
            self.ports["iperf"], cpus=self.cpus["origin"],
        )

    # -- load generators --------------------------------------------------

    def wrk(
        self, name: str, url: str, connections: int, seconds: int, certificate: bool, headers: Sequence[str] = ()
    ) -> tuple[WrkResult, float]:
        """
        One wrk run; returns its result and the CPU share wrk used (1.0 =
        one core busy all the time).
        """
        device = self.pki.devices[0]
        command = wrkCommand(
            url,
            connections,
            seconds,
            self.shim if certificate else None,
            device.files.certificate if certificate else None,
            device.files.key if certificate else None,
            headers=headers,
        )
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        output = self.group.run(name, command.argv, timeout=seconds + 30, cpus=self.cpus["load"],
                                environment=command.environment)
        elapsed = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return parseWrkOutput(output), used / elapsed if elapsed > 0 else 0.0

    def iperf(self, name: str, port: int, streams: int, seconds: int) -> float:
        """
        One iperf3 run through 127.0.0.1:C{port}; returns MiB/s received.

        A run whose test never started (see L{iperfNotStarted}) is tried
        once more after a second.
        """
        for attempt in (1, 2):
            output = self.group.run(
                name,
                ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-P", str(streams), "-O", "1",
                 "-J"],
                timeout=seconds + 60,
                cpus=self.cpus["load"],
            )
            try:
                data = json.loads(output)
            except ValueError as e:
                raise ProcessFailed(f"iperf3 printed no result ({e}): {output[-500:]}") from e
            error = data.get("error") if isinstance(data, dict) else None
            if error is None:
                break
            if attempt == 1 and iperfNotStarted(str(error)):
                _log(f"  {name}: iperf3 could not start its test ({error}); trying once more")
                time.sleep(1.0)
                continue
            raise ProcessFailed(f"iperf3: {error}")
        try:
            return data["end"]["sum_received"]["bits_per_second"] / 8 / MIB
        except (KeyError, TypeError) as e:
            raise ProcessFailed(f"iperf3 printed no result ({e}): {output[-500:]}") from e

    def setupLatency(self, name: str, port: int) -> dict[str, Any]:
        """
        Tunnel setup latency through 127.0.0.1:C{port}.
        """
        output = self.group.run(
            name,
            [sys.executable, "-m", "benchmarks.tools", "latency", "--port", str(port),
             "--count", str(self.options.setupSamples)],
            timeout=120,
            cpus=self.cpus["load"],
        )
        return json.loads(output.strip().splitlines()[-1])

    # -- HTTPS figures (1, 2, 3) ------------------------------------------

    def httpFigures(self, system: str, port: int, gateway: Started) -> None:
        """
        Figures 1, 2 and 3 for an HTTPS gateway on 127.0.0.1:C{port}.
        """
        base = f"https://127.0.0.1:{port}"
        d = self.options.duration
        certificate = system != "direct"
        if system == "direct":
            base = f"http://127.0.0.1:{self.ports['origin']}"
        # Warm-up: pools, caches, lazily imported code.
        self.wrk(f"{system}-warmup", base + "/1k", 50, 1, certificate)
        loads = [
            ("keepalive", "/1k", 50, ()),
            ("bulk", "/1m", 10, ()),
            ("handshake", "/1k", 16, ("Connection: close",)),
        ]
        for group, path, connections, headers in loads:
            if not self.options.selects(group):
                continue
            for run in range(self.options.runs):
                cpuBefore = cpuSeconds(gateway.pid) if gateway is not None else 0.0
                try:
                    result, loadCpu = self.wrk(f"{system}-{group}", base + path, connections, d, certificate, headers)
                except (ProcessFailed, LoadGeneratorError) as e:
                    for key in self._keys(group):
                        self.results.fail(key, system, str(e).splitlines()[0])
                    break
                gatewayCpu = (cpuSeconds(gateway.pid) - cpuBefore) / result.seconds if gateway is not None else 0.0
                self._recordHttp(system, group, result, loadCpu, gatewayCpu)
                self.log(
                    f"  {system} {group} run {run + 1}: {result.requestsPerSecond:,.0f} req/s, "
                    f"p50 {result.latencyUs['p50'] / 1000:.2f} ms, p99 {result.latencyUs['p99'] / 1000:.2f} ms, "
                    f"errors {result.failures}; wrk CPU {loadCpu:.0%}"
                    + (f", {system} CPU {gatewayCpu:.0%}" if gateway is not None else "")
                )

    @staticmethod
    def _keys(group: str) -> tuple[str, ...]:
        return {
            "keepalive": ("keepalive-rps", "keepalive-p50", "keepalive-p99"),
            "bulk": ("bulk-mibps",),
            "handshake": ("handshake-cps",),
        }[group]

    def _recordHttp(self, system: str, group: str, result: WrkResult, loadCpu: float, gatewayCpu: float) -> None:
        keys = self._keys(group)
        if result.errors["status"] > 0 or result.requests == 0:
            for key in keys:
                self.results.fail(
                    key, system, f"{result.errors['status']} of {result.requests} responses were not 2xx/3xx"
                )
            return
        other = result.failures - result.errors["status"]
        if other:
            self.results.note(keys[0], system, f"wrk counted socket errors in a run: {result.errors}")
        if group == "keepalive":
            self.results.record("keepalive-rps", system, result.requestsPerSecond)
            self.results.record("keepalive-p50", system, result.latencyUs["p50"] / 1000)
            self.results.record("keepalive-p99", system, result.latencyUs["p99"] / 1000)
        elif group == "bulk":
            self.results.record("bulk-mibps", system, result.requestsPerSecond * configs.ORIGIN_FILES["1m"] / MIB)
        else:
            self.results.record("handshake-cps", system, result.requestsPerSecond)
        cpu = self.results.extra.setdefault("cpu", {}).setdefault(system, {}).setdefault(group, [])
        cpu.append({"loadGenerator": round(loadCpu, 3), "gateway": round(gatewayCpu, 3)})

    def checkRefusedWithoutCertificate(self, system: str, port: int) -> None:
        """
        A request without a client certificate must not reach the origin.
        """
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
             "--cacert", self.pki.ca.certificate, f"https://127.0.0.1:{port}/1k"],
            capture_output=True, text=True,
        )
        status = done.stdout.strip() or "000"
        refused = status != "200"
        checks = self.results.extra.setdefault("withoutCertificate", {})
        checks[system] = f"refused (curl exit {done.returncode}, HTTP status {status})" if refused else "ACCEPTED"
        if not refused:
            self.results.note("keepalive-rps", system, "answered 200 to a client without a certificate")

    def checkCertificateLogged(self, system: str, logPath: str, marker: str, resumedMarker: str | None) -> None:
        """
        Count the log lines that name the bench device (and resumed
        sessions), to show that the load generator's handshakes carried
        the certificate.
        """
        total = withDevice = resumed = 0
        try:
            with open(logPath, errors="replace") as f:
                for line in f:
                    if "reused=" not in line and "clientdeviceid" not in line and "Certificate accepted" not in line:
                        continue
                    total += 1
                    if marker in line:
                        withDevice += 1
                    if resumedMarker is not None and resumedMarker in line:
                        resumed += 1
        except OSError as e:
            total = -1
            self.results.extra.setdefault("certificateSeen", {})[system] = f"cannot read {logPath}: {e}"
            return
        self.results.extra.setdefault("certificateSeen", {})[system] = {
            "log": os.path.relpath(logPath, self.runDirectory),
            "linesLogged": total,
            "withBenchDevice": withDevice,
            "onResumedSession": resumed if resumedMarker is not None else "not logged",
        }

    # -- figure 6 -------------------------------------------------------

    def idleMemory(self, system: str, keyPrefix: str, mode: str, port: int, server: Started) -> None:
        """
        Open idle connections (C{mode}: https, tfacp or tls) and read the
        gateway's memory at each of L{Options.idleCounts}.
        """
        device = self.pki.devices[0]
        holder = self.group.start(
            f"{system}-hold-{mode}",
            [sys.executable, "-m", "benchmarks.tools", "hold", "--mode", mode, "--port", str(port),
             "--cert", device.files.certificate, "--key", device.files.key, "--ca", self.pki.ca.certificate,
             "--echo-port", str(self.ports["echo"])],
            cpus=self.cpus["load"],
            cwd=os.path.dirname(HERE),
            pipes=True,
        )
        try:
            self._command(holder, "open 1")  # the code paths are loaded
            time.sleep(1.0)
            base = rssKiB(server.pid)
            for count in self.options.idleCounts:
                key = f"{keyPrefix}-{count}"
                reachable = count
                if mode != "https":
                    # A relay holds two descriptors per tunnel (client and
                    # real server), and the hard limit may not be raised.
                    reachable = min(count, (self.openFiles - 200) // 2)
                    if reachable < count:
                        self.results.note(key, system, f"{reachable:,} tunnels held, not {count:,}: this machine's "
                                          f"open-file limit is {self.openFiles:,} and a relay needs two per tunnel")
                answer = self._command(holder, f"open {reachable}", timeout=300)
                time.sleep(1.0)
                rss = rssKiB(server.pid)
                held = answer["held"]
                if answer["failures"]:
                    self.results.note(key, system, f"{answer['failures']} of {count} connections failed "
                                      f"({answer['firstFailure']})")
                if keyPrefix == "idle-tunnel" and system == "ztnagw" and count == max(self.options.idleCounts):
                    self.results.extra["idleTunnelsHeld"] = held
                    self.results.extra["idleTunnelsAsked"] = reachable
                if held <= 1:
                    self.results.fail(key, system, "no connection could be held")
                    continue
                perConnection = (rss - base) / (held - 1)
                self.results.record(key, system, perConnection)
                self.results.extra.setdefault("idleRss", {}).setdefault(system, []).append(
                    {"mode": mode, "held": held, "rssKiB": rss, "baseKiB": base, "seconds": answer["seconds"]}
                )
                self.log(f"  {system} {mode}: {held} idle, RSS {base / 1024:.1f} → {rss / 1024:.1f} MiB, "
                         f"{perConnection:.1f} KiB each ({answer['seconds']:.1f} s to open)")
        except (ProcessFailed, ValueError, KeyError) as e:
            for count in self.options.idleCounts:
                self.results.fail(f"{keyPrefix}-{count}", system, str(e).splitlines()[0])
        finally:
            self.group.stop(holder)

    @staticmethod
    def _command(holder: Started, line: str, timeout: float = 120) -> dict[str, Any]:
        import select

        assert holder.process.stdin is not None and holder.process.stdout is not None
        holder.process.stdin.write((line + "\n").encode())
        holder.process.stdin.flush()
        ready, _, _ = select.select([holder.process.stdout], [], [], timeout)
        if not ready:
            raise ProcessFailed(f"the connection holder did not answer {line!r} in {timeout:g} s")
        answer = holder.process.stdout.readline()
        if not answer:
            raise ProcessFailed(f"the connection holder exited:\n{holder.logTail()}")
        data = json.loads(answer)
        if "error" in data:
            raise ProcessFailed(data["error"])
        return data

    # -- profiles -------------------------------------------------------

    def pySpy(self) -> str | None:
        """
        The py-spy command, installed from PyPI into the harness's
        environment when missing; C{None} if that fails.
        """
        found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if os.path.exists(found):
            return found
        self.log("Installing py-spy from PyPI ...")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], capture_output=True, text=True)
        candidate = os.path.join(os.path.dirname(sys.executable), "py-spy")
        if done.returncode != 0 or not os.path.exists(candidate):
            self.results.extra["profiles"] = f"py-spy could not be installed: {done.stderr[-500:]}"
            return None
        return candidate

    def profile(self, title: str, name: str, gateway: Started, load: Callable[[], object]) -> None:
        """
        Sample the gateway with py-spy while C{load} runs (a run that is not
        counted in the figures).
        """
        pyspy = self.pySpy()
        if pyspy is None:
            return
        output = os.path.join(self.runDirectory, "profiles", name + ".txt")
        seconds = self.options.duration
        recorder = self.group.start(f"py-spy-{name}", pySpyCommand(pyspy, gateway.pid, seconds, output))
        time.sleep(0.5)
        try:
            load()
        finally:
            try:
                recorder.process.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                pass
            self.group.stop(recorder)
        try:
            with open(output) as f:
                summary = summarise(f)
        except (OSError, ProfileError) as e:
            self.results.extra.setdefault("profiles", {})[name] = f"no profile: {e}"
            return
        self.results.extra.setdefault("profiles", {})[name] = {
            "samples": summary.samples,
            "self": [(s.function, round(s.share, 4)) for s in summary.selfTime],
            "inclusive": [(s.function, round(s.share, 4)) for s in summary.inclusive],
            "file": os.path.relpath(output, self.runDirectory),
        }
        self.profiles.append((title, renderSummary(title, summary)))

    # -- the systems ----------------------------------------------------

    def startNginx(self) -> tuple[Started, int]:
        """
        nginx as the mTLS reverse proxy.
        """
        port = freePort()
        path = self.conf("nginx.conf", configs.proxyNginx(self.runDirectory, self.pki, port, self.ports["origin"], self.openFiles))
        started = self.group.startServer(
            "nginx", ["nginx", "-c", path, "-e", os.path.join(self.runDirectory, "logs", "nginx-error.log")],
            port, cpus=self.cpus["gateway"],
        )
        return started, port

    def startHaproxy(self) -> tuple[Started, int]:
        """
        HAProxy as the mTLS reverse proxy.
        """
        port = freePort()
        path = self.conf("haproxy.cfg", configs.haproxy(self.runDirectory, self.pki, port, self.ports["origin"], self.openFiles))
        started = self.group.startServer("haproxy", ["haproxy", "-db", "-f", path], port, cpus=self.cpus["gateway"])
        return started, port

    def startZtnagw(self, name: str, workers: int) -> tuple[Started, int]:
        """
        A ztnagw gateway with the bench devices registered (a fresh state
        directory each time).
        """
        ports = configs.ZtnagwPorts(
            vip=freePort(), ems=freePort(), origin=self.ports["origin"],
            tunnelPorts=(self.ports["echo"], self.ports["iperf"]),
        )
        # A fresh state directory (registry) for every start, even of the
        # same role: registering into an old one would be refused.
        self.starts += 1
        name = f"{name}-{self.starts}"
        state = os.path.join(self.runDirectory, "state", name)
        os.makedirs(state)
        path = self.conf(f"{name}.conf", configs.ztnagwConfig(state, self.pki, ports, workers))
        python = self.options.python
        for device in self.pki.devices:
            done = subprocess.run(
                [python, "-m", "ztnagw", "endpoint", "register", "--cert", device.files.certificate, "--static",
                 "--config", path],
                capture_output=True, text=True,
            )
            if done.returncode != 0:
                raise ProcessFailed(f"ztnagw endpoint register failed: {done.stderr.strip() or done.stdout.strip()}")
        started = self.group.startServer(
            name,
            [python, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "ztnagw", "--config", path],
            ports.vip,
            cpus=self.cpus["gateway"],
            cwd=self.runDirectory,
        )
        return started, ports.vip

    def startForwarder(self, name: str, vip: int, encryption: bool) -> dict[str, int]:
        """
        C{ztnagw-forward} with one -L to the echo server and one to the
        iperf3 sink; returns their local ports.
        """
        device = self.pki.devices[0]
        local = {"echo": freePort(), "iperf": freePort()}
        argv = [
            _command(self.options.python, "ztnagw-forward"),
            "--cert", device.files.certificate, "--key", device.files.key, "--ca", self.pki.ca.certificate,
            "--gateway", f"127.0.0.1:{vip}",
            "--encryption", "on" if encryption else "off",
            "-L", f"127.0.0.1:{local['echo']}:127.0.0.1:{self.ports['echo']}",
            "-L", f"127.0.0.1:{local['iperf']}:127.0.0.1:{self.ports['iperf']}",
        ]
        self.group.startServer(name, argv, local["iperf"], cpus=self.cpus["load"])
        return local

    def startStunnel(self) -> tuple[Started, Started, dict[str, int]]:
        """
        A stunnel server (the gateway's role) and two stunnel clients (the
        forwarder's role), to the echo server and to the iperf3 sink.
        """
        servers = {"echo": freePort(), "iperf": freePort()}
        clients = {"echo": freePort(), "iperf": freePort()}
        # One process per role, as with the gateway and the forwarder.
        serverConf = self.conf(
            "stunnel-server.conf",
            configs.stunnelServer(self.pki, {t: (servers[t], self.ports[t]) for t in servers}),
        )
        server = self.group.startServer("stunnel-server", ["stunnel4", serverConf], servers["iperf"],
                                        cpus=self.cpus["gateway"])
        clientConf = self.conf(
            "stunnel-client.conf", configs.stunnelClient(self.pki, {t: (clients[t], servers[t]) for t in clients})
        )
        client = self.group.startServer("stunnel-client", ["stunnel4", clientConf], clients["iperf"],
                                        cpus=self.cpus["load"])
        return server, client, {**clients, "serverEcho": servers["echo"]}

    # -- tunnels (4, 5, 6) ----------------------------------------------

    def tunnelFigures(self, system: str, streamsPorts: dict[str, int], tls: str | None, gateway: Started | None) -> None:
        """
        Figures 4 and 5 through a forwarder (or stunnel client) whose local
        ports are C{streamsPorts}.

        @param tls: C{"tls1"}/C{"tls0"} for ztnagw; C{None} for a peer that
            has one mode only (its figures go to both lines).
        """
        modes = [tls] if tls is not None else ["tls1", "tls0"]
        if self.options.selects("tunnel"):
            for streams in (1, 8):
                for run in range(self.options.runs):
                    try:
                        mibps = self.iperf(f"{system}-iperf", streamsPorts["iperf"], streams, self.options.duration)
                    except ProcessFailed as e:
                        for mode in modes:
                            self.results.fail(f"tunnel-{streams}-{mode}-mibps", system, str(e).splitlines()[0])
                        break
                    for mode in modes:
                        self.results.record(f"tunnel-{streams}-{mode}-mibps", system, mibps)
                    self.log(f"  {system} {tls or 'tls'} {streams} stream(s) run {run + 1}: {mibps:,.0f} MiB/s")
            if tls is None and system == "stunnel":
                for streams in (1, 8):
                    self.results.note(f"tunnel-{streams}-tls0-mibps", system,
                                      "stunnel has no clear mode: its TLS figure")
        if self.options.selects("setup") and tls != "tls0":
            for run in range(self.options.runs):
                try:
                    latency = self.setupLatency(f"{system}-setup", streamsPorts["echo"])
                except (ProcessFailed, ValueError) as e:
                    for key in ("tunnel-setup-p50", "tunnel-setup-p99"):
                        self.results.fail(key, system, str(e).splitlines()[0])
                    break
                if latency["failures"] or not latency["count"]:
                    self.results.note("tunnel-setup-p50", system, f"{latency['failures']} setups failed")
                if latency["count"]:
                    self.results.record("tunnel-setup-p50", system, latency["p50Ms"])
                    self.results.record("tunnel-setup-p99", system, latency["p99Ms"])
                    self.log(f"  {system} setup run {run + 1}: p50 {latency['p50Ms']:.2f} ms, "
                             f"p99 {latency['p99Ms']:.2f} ms")

    # -- the whole run --------------------------------------------------

    def runHttpSystem(self, system: str, start: Callable[[], tuple[Started, int]], logCheck: Callable[[Started], None]) -> None:
        """
        Figures 1 to 3 (and the certificate checks) for one HTTPS gateway,
        then figure 6 on a fresh instance.
        """
        if not self.options.selects(system):
            return
        if any(self.options.selects(g) for g in ("keepalive", "bulk", "handshake")):
            self.log(f"{system}: keep-alive, 1 MiB and new-connection loads")
            try:
                started, port = start()
            except (ProcessFailed, BenchmarkError) as e:
                for key in ("keepalive-rps", "keepalive-p50", "keepalive-p99", "bulk-mibps", "handshake-cps"):
                    self.results.fail(key, system, str(e).splitlines()[0])
                self.log(f"  {system} did not start: {e}")
                return
            self.checkRefusedWithoutCertificate(system, port)
            self.httpFigures(system, port, started)
            if system == "ztnagw" and self.options.profile:
                base = f"https://127.0.0.1:{port}"
                self.profile("Load 1: keep-alive 1 KiB, 50 connections", "load1-keepalive", started,
                             lambda: self.wrk("profile-load1", base + "/1k", 50, self.options.duration, True))
                self.profile("Load 2: 1 MiB bodies, 10 connections", "load2-bulk", started,
                             lambda: self.wrk("profile-load2", base + "/1m", 10, self.options.duration, True))
            self.group.stop(started)
            logCheck(started)
        if self.options.selects("idle") and system in ("ztnagw", "nginx"):
            self.log(f"{system}: idle HTTPS connections")
            try:
                started, port = start()
            except (ProcessFailed, BenchmarkError) as e:
                for count in self.options.idleCounts:
                    self.results.fail(f"idle-https-{count}", system, str(e).splitlines()[0])
                return
            self.idleMemory(system, "idle-https", "https", port, started)
            self.group.stop(started)

    def runDirect(self) -> None:
        """
        The baselines without any gateway: wrk to the origin in plain HTTP,
        iperf3 and the echo server directly.  They show what the load
        generators and the origin can do on this machine.
        """
        if not self.options.selects("direct"):
            return
        self.log("direct: the origin without a gateway (plain HTTP, plain TCP)")
        self.httpFigures("direct", self.ports["origin"], None)  # type: ignore[arg-type]
        self.tunnelFigures("direct", {"iperf": self.ports["iperf"], "echo": self.ports["echo"]}, None, None)
        for streams in (1, 8):
            self.results.note(f"tunnel-{streams}-tls0-mibps", "direct", "plain TCP, no tunnel")

    def runStunnel(self) -> None:
        """
        Figures 4, 5 and 6 for the stunnel pair.
        """
        if not self.options.selects("stunnel"):
            return
        self.log("stunnel pair: tunnel bulk, setup latency, idle tunnels")
        try:
            server, client, ports = self.startStunnel()
        except ProcessFailed as e:
            for key in ("tunnel-1-tls1-mibps", "tunnel-8-tls1-mibps", "tunnel-setup-p50"):
                self.results.fail(key, "stunnel", str(e).splitlines()[0])
            return
        self.tunnelFigures("stunnel", ports, None, server)
        if self.options.selects("idle"):
            self.idleMemory("stunnel", "idle-tunnel", "tls", ports["serverEcho"], server)
        self.group.stop(client)
        self.group.stop(server)
        self.checkCertificateLogged("stunnel", server.logPath, f"CN={self.pki.devices[0].uid}", None)

    def runZtnagwTunnels(self) -> None:
        """
        Figures 4, 5 and 6 for ztnagw's TFACP and forwarder.
        """
        if not self.options.selects("ztnagw") or not any(self.options.selects(g) for g in ("tunnel", "setup", "idle")):
            return
        self.log("ztnagw: tunnels (tls=1 and tls=0), setup latency, idle tunnels")
        try:
            gateway, vip = self.startZtnagw("ztnagw-tunnels", self.options.workers)
            forwarders = {
                "tls1": self.startForwarder("forwarder-tls1", vip, True),
                "tls0": self.startForwarder("forwarder-tls0", vip, False),
            }
        except (ProcessFailed, BenchmarkError) as e:
            for key in ("tunnel-1-tls1-mibps", "tunnel-8-tls1-mibps", "tunnel-1-tls0-mibps", "tunnel-8-tls0-mibps",
                        "tunnel-setup-p50", "tunnel-setup-p99"):
                self.results.fail(key, "ztnagw", str(e).splitlines()[0])
            self.log(f"  ztnagw tunnels could not start: {e}")
            return
        for mode, ports in forwarders.items():
            self.tunnelFigures("ztnagw", ports, mode, gateway)
        if self.options.profile and self.options.selects("tunnel"):
            self.profile("Load 4: tunnel bulk, tls=1, 8 streams", "load4-tunnel", gateway,
                         lambda: self.iperf("profile-load4", forwarders["tls1"]["iperf"], 8, self.options.duration))
        for name in ("forwarder-tls1", "forwarder-tls0"):
            for started in list(self.group.started):
                if started.name == name:
                    self.group.stop(started)
        self.group.stop(gateway)
        if self.options.selects("idle"):
            try:
                gateway, vip = self.startZtnagw("ztnagw-idle", self.options.workers)
            except (ProcessFailed, BenchmarkError) as e:
                for count in self.options.idleCounts:
                    self.results.fail(f"idle-tunnel-{count}", "ztnagw", str(e).splitlines()[0])
                return
            self.idleMemory("ztnagw", "idle-tunnel", "tfacp", vip, gateway)
            self.group.stop(gateway)

    def runWorkers(self) -> None:
        """
        Figure 7: keep-alive req/s with the asked number of workers.
        """
        if not self.options.selects("ztnagw", "workers"):
            return
        workers = self.options.workers
        if workers == 1:
            value = self.results.median("keepalive-rps", "ztnagw")
            if value is not None:
                self.results.record("workers-rps", "ztnagw", value)
            self.results.note("workers-rps", "ztnagw", "1 worker only (run with --workers N to fill this line)")
            return
        try:
            started, port = self.startZtnagw("ztnagw-workers", workers)
        except (ProcessFailed, BenchmarkError) as e:
            self.results.fail("workers-rps", "ztnagw", str(e).splitlines()[0])
            return
        time.sleep(1.0)
        processes = len(processTree(started.pid))
        if processes < workers:
            self.results.note("workers-rps", "ztnagw", f"1 worker only: asked for {workers}, the gateway runs "
                              f"{processes} process(es) (the workers option is not implemented yet)")
        for run in range(self.options.runs):
            try:
                result, _ = self.wrk("ztnagw-workers", f"https://127.0.0.1:{port}/1k", 50, self.options.duration, True)
            except (ProcessFailed, LoadGeneratorError) as e:
                self.results.fail("workers-rps", "ztnagw", str(e).splitlines()[0])
                break
            self.results.record("workers-rps", "ztnagw", result.requestsPerSecond)
        self.group.stop(started)

    def ztnagwLogCheck(self, started: Started) -> None:
        """
        Look for the bench device's UID in ztnagw's logs (its traffic lines
        go to twistd's log, which is the process's output).
        """
        self.checkCertificateLogged("ztnagw", started.logPath, f'clientdeviceid="{self.pki.devices[0].uid}"', None)

    def run(self) -> Results:
        """
        Measure everything selected.
        """
        facts = self.results.facts
        facts["machine"] = machineFacts()
        facts["versions"] = versions(self.options.python)
        facts["options"] = {
            "runs": self.options.runs, "duration": self.options.duration, "workers": self.options.workers,
            "only": list(self.options.only), "idleCounts": list(self.options.idleCounts),
        }
        facts["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        # Other work on the machine skews every figure: say how busy it was.
        facts["loadAverageAtStart"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.prepare()
        uid = self.pki.devices[0].uid
        self.runDirect()
        self.runHttpSystem(
            "nginx", self.startNginx,
            lambda s: self.checkCertificateLogged(
                "nginx", os.path.join(self.runDirectory, "logs", "nginx-access.log"), f"CN={uid}", "reused=r"),
        )
        self.runHttpSystem(
            "haproxy", self.startHaproxy,
            lambda s: self.checkCertificateLogged("haproxy", s.logPath, f"CN={uid}", "reused=1"),
        )
        self.runHttpSystem("ztnagw", lambda: self.startZtnagw("ztnagw-http", self.options.workers), self.ztnagwLogCheck)
        self.runStunnel()
        self.runZtnagwTunnels()
        self.runWorkers()
        facts["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        facts["loadAverageAtEnd"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        return self.results


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the benchmark; print and write the results.
    """
    options = parseOptions(sys.argv[1:] if argv is None else argv)
    limit = raiseOpenFileLimit()
    try:
        ensureTools(_log)
    except ToolsMissing as e:
        print(f"benchmarks: {e}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runDirectory = os.path.join(RESULTS, stamp)
    os.makedirs(runDirectory, exist_ok=True)
    bench = Bench(options, runDirectory, limit)
    bench.results.facts["openFileLimit"] = limit
    previous = signal.signal(signal.SIGTERM, _interrupted)
    status = 0
    started = time.monotonic()
    try:
        bench.run()
    except KeyboardInterrupt:
        _log("Interrupted: stopping every process the benchmark started.")
        status = 130
    except (ProcessFailed, LoadGeneratorError, BenchmarkError, OSError) as e:
        _log(f"The benchmark failed: {e}")
        status = 1
    finally:
        bench.group.stopAll()
        signal.signal(signal.SIGTERM, previous)
    bench.results.facts["elapsedSeconds"] = round(time.monotonic() - started)
    sections = []
    if bench.profiles:
        sections.append(("Profiles of ztnagw (py-spy)", "\n\n".join(body for _, body in bench.profiles)))
    for name in ("withoutCertificate", "certificateSeen"):
        if name in bench.results.extra:
            sections.append((name, "```\n" + json.dumps(bench.results.extra[name], indent=2) + "\n```"))
    markdown = renderMarkdown(bench.results, sections)
    document = dumpJson(bench.results)
    for directory in (runDirectory, RESULTS):
        with open(os.path.join(directory, "results.md" if directory == runDirectory else "latest.md"), "w") as f:
            f.write(markdown)
        with open(os.path.join(directory, "results.json" if directory == runDirectory else "latest.json"), "w") as f:
            f.write(document)
    print()
    print(markdown)
    print(f"Written: {os.path.relpath(runDirectory)}/results.md and results.json (logs and profiles beside them)")
    return status

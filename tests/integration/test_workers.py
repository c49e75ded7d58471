"""
Several worker processes (C{set workers 2}) with the real daemon: both
serve one port, a killed worker is replaced without losing a connection,
SIGTERM leaves no process behind, a revocation reaches every worker, a
worker that keeps dying stops the gateway with status 1, and (as root) a
VIP below port 1024 works with C{twistd --uid nobody}.
"""

from __future__ import annotations

import datetime
import os
import pwd
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import TestCase

from tests.integration.httpsfixture import readResponse
from tests.support.daemon import binary, environment, freePort, runAdmin
from ztnagw.config import load
from ztnagw.ems.csr import parseCertificateSigningRequest
from ztnagw.ems.identifiers import newSerial, newUid
from ztnagw.ems.keys import certificatePem, newPrivateKey, privateKeyPem
from ztnagw.ems.signing import issueDeviceCertificate
from ztnagw.logs.line import parseKeyValue
from ztnagw.registry import openStore
from ztnagw.registry.record import EndpointRecord, canonicalSerial
from ztnagw.startup import prepare

_CONFIG = """
config system global
    set state-dir "state"
    set log-file "traffic.log"
    set workers {workers}
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
        set serial-number "FCTEMS8825007278"
    next
end
config firewall vip
    edit "MAIN"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "any"
        set extport {vip}
        set ssl-certificate "gateway"
    next
end
config firewall access-proxy
    edit "MAIN"
        set vip "MAIN"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {backend}
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 1
        set name "all"
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "MAIN"
        set action accept
        set schedule "always"
        set logtraffic all
    next
end
"""


class Device:
    """
    A device certificate and key on disk.
    """

    def __init__(self, uid: str, certificate: str, key: str) -> None:
        self.uid = uid
        self.certificate = certificate
        self.key = key


def _children(pid: int) -> dict[int, int]:
    """
    The worker processes of daemon C{pid}: worker id to pid.
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == pid and b"ztnagw.workers" in command:
            found[int(command[command.index(b"--worker") + 1])] = int(entry)
    return found


def _alive(pid: int) -> bool:
    """
    Whether process C{pid} exists (and is not a zombie).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _ids(pid: int) -> list[int]:
    """
    The real, effective, saved and file-system uids of process C{pid}.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise RuntimeError("no Uid line")


def _socketInode(localPort: int, remotePort: int) -> str | None:
    """
    The inode of the server side of the loopback connection between
    C{localPort} (the gateway) and C{remotePort} (the client).
    """
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == localPort and int(remote.split(":")[1], 16) == remotePort:
                return fields[9]
    return None


def _holder(pids: dict[int, int], inode: str) -> int | None:
    """
    Which worker holds the socket C{inode}.
    """
    for workerId, pid in pids.items():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return workerId
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _closedWithin(sock: ssl.SSLSocket, seconds: float) -> float | None:
    """
    How long until the gateway closes C{sock}, or C{None} if it stays open
    for C{seconds}.
    """
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ssl.SSLError, ConnectionError, OSError):
            return time.monotonic() - start
    return None


class WorkersGateway:
    """
    The daemon with C{set workers N}, its backend, its devices.

    @ivar ports: C{vip}, C{ems}, C{backend}.
    """

    def __init__(self, directory: str, workers: int = 2, vipPort: int | None = None) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.workers = workers
        self.ports = {"vip": vipPort or freePort(), "ems": freePort(), "backend": freePort()}
        self.configPath = os.path.join(self.directory, "gateway.conf")
        with open(self.configPath, "w") as f:
            f.write(_CONFIG.format(workers=workers, **self.ports))
        self.logPath = os.path.join(self.directory, "twistd.log")
        self.trafficLog = os.path.join(self.directory, "traffic.log")
        self.prepared = prepare(load(self.configPath))
        self.ca = os.path.join(self.directory, "state", "ems1", "ca.crt")
        self.process: subprocess.Popen | None = None
        self.backend: subprocess.Popen | None = None
        self._devices = 0

    def start(
        self,
        twistdArguments: Sequence[str] = (),
        wait: bool = True,
        python: tuple[str, dict[str, str]] | None = None,
    ) -> None:
        """
        Start the backend and the daemon; unless C{wait} is false, wait
        until every worker serves with its registry loaded.

        @param python: the interpreter to run twistd with and its
            environment (this one's C{twistd} by default).
        """
        self.backend = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.httpsbackend", str(self.ports["backend"])],
            stdout=subprocess.PIPE,
            env=environment(),
        )
        assert self.backend.stdout is not None
        if self.backend.stdout.readline().strip() != b"ready":
            raise RuntimeError("the backend did not start")
        self._log = open(self.logPath, "ab")
        if python is None:
            command, env = binary("twistd"), environment()
        else:
            command = [python[0], "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
            env = python[1]
        self.process = subprocess.Popen(
            command + ["-n", "--pidfile=", "--logfile=-", *twistdArguments, "ztnagw", "--config", self.configPath],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            if self.workers > 1:
                for workerId in range(1, self.workers + 1):
                    self.waitForLog(rf"Worker {workerId} \(pid \d+\) serving")
            self.waitForLog("registry loaded", count=self.workers)

    def log(self) -> str:
        """
        The daemon's log so far.
        """
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def waitForLog(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[re.Match[str]]:
        """
        Wait until the log matches C{pattern} C{count} times.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.log()))
            if len(found) >= count:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited waiting for {pattern!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pattern!r} never appeared {count} time(s):\n{self.log()}")
            time.sleep(0.05)

    def pids(self) -> dict[int, int]:
        """
        The running workers, by id.
        """
        assert self.process is not None
        return _children(self.process.pid)

    def stop(self, timeout: float = 30.0) -> int | None:
        """
        SIGTERM the daemon and wait for its status; stop the backend.
        """
        status = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                status = self.process.wait()
            self._log.close()
            self.process = None
        if self.backend is not None:
            self.backend.terminate()
            self.backend.wait(10)
            self.backend = None
        return status

    # Devices.

    def issueDevice(self) -> Device:
        """
        A registered device certificate from the gateway's EMS CA.
        """
        self._devices += 1
        uid = newUid()
        key = newPrivateKey()
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)]))
            .sign(key, hashes.SHA256())
        )
        serial = newSerial()
        certificate = issueDeviceCertificate(
            self.prepared.authorities[1],
            parseCertificateSigningRequest(request.public_bytes(serialization.Encoding.PEM)),
            uid,
            serial,
            datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5),
        )
        base = os.path.join(self.directory, f"device{self._devices}")
        with open(base + ".crt", "wb") as f:
            f.write(certificatePem(certificate))
        fd = os.open(base + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(privateKeyPem(key))
        config = self.prepared.config
        ems = config.emsConnectors[1]
        store = openStore(ems.registry, config.systemGlobal.stateDir, 1)
        try:
            with store.transaction() as transaction:
                transaction.put(
                    EndpointRecord(
                        uid=uid,
                        certSerial=canonicalSerial(serial),
                        emsSerial=ems.serialNumber or "",
                        tags=frozenset(),
                        staticPresence=True,
                    )
                )
        finally:
            store.close()
        return Device(uid, base + ".crt", base + ".key")

    # Clients.

    def connect(self, device: Device) -> ssl.SSLSocket:
        """
        A new TLS connection to the VIP with C{device}'s certificate.
        """
        context = ssl.create_default_context(cafile=self.ca)
        context.check_hostname = False
        context.load_cert_chain(device.certificate, device.key)
        raw = socket.create_connection(("127.0.0.1", self.ports["vip"]), timeout=30)
        return context.wrap_socket(raw)

    def request(self, device: Device, sock: ssl.SSLSocket | None = None, close: bool = True) -> int:
        """
        One C{GET /headers}: on a new connection (closed after it) unless
        C{sock} is given; the status.
        """
        own = sock is None
        if sock is None:
            sock = self.connect(device)
        try:
            connection = "close" if close and own else "keep-alive"
            sock.sendall(f"GET /headers HTTP/1.1\r\nHost: gw\r\nConnection: {connection}\r\n\r\n".encode())
            return readResponse(sock)[0]
        finally:
            if own:
                sock.close()

    def servingWorker(self, sock: ssl.SSLSocket) -> int | None:
        """
        Which worker holds the other end of C{sock}.
        """
        inode = _socketInode(self.ports["vip"], sock.getsockname()[1])
        return None if inode is None else _holder(self.pids(), inode)

    def trafficLines(self) -> list[dict[str, str]]:
        """
        The traffic log file's lines, as fields.
        """
        if not os.path.exists(self.trafficLog):
            return []
        with open(self.trafficLog, encoding="utf-8") as f:
            return [dict(parseKeyValue(line.rstrip("\n"))) for line in f if line.strip()]

    def sessionsFrom(self, ports: set[int], timeout: float = 10.0) -> list[dict[str, str]]:
        """
        Wait for the traffic lines of the sessions from client C{ports}.
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = [
                line for line in self.trafficLines()
                if line.get("logid") == "0005000024" and int(line.get("srcport", "0")) in ports
            ]
            if len({line["srcport"] for line in lines}) >= len(ports) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


class WorkersTests(TestCase):
    """
    Two workers behind one port.
    """

    timeout = 180

    def setUp(self) -> None:
        self.gateway = WorkersGateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def manyRequests(self, count: int) -> set[int]:
        """
        C{count} requests, each on a new connection, all answered 200; the
        client ports.
        """
        ports = set()
        for _ in range(count):
            sock = self.gateway.connect(self.device)
            ports.add(sock.getsockname()[1])
            self.assertEqual(self.gateway.request(self.device, sock, close=True), 200)
            sock.close()
        return ports

    def test_bothServe(self) -> None:
        """
        New connections are spread over both workers: their traffic log
        lines name both (C{workerid}), and the daemon's log holds each
        worker's lines, tagged.
        """
        time.sleep(0.6)  # the device reaches both registry indexes
        self.assertEqual(sorted(self.gateway.pids()), [1, 2])
        ports = self.manyRequests(30)
        lines = self.gateway.sessionsFrom(ports)
        self.assertEqual(len(lines), 30)
        self.assertEqual({line["workerid"] for line in lines}, {"1", "2"})
        self.assertEqual({line["action"] for line in lines}, {"accept"})
        log = self.gateway.log()
        self.assertIn("[worker1 ztnagw.service#info] ztnagw ztnagw starting", log)
        self.assertIn("[worker2 ztnagw.service#info] ztnagw ztnagw starting", log)
        self.assertIn("(worker 2 of 2)", log)

    def test_killedWorkerReplaced(self) -> None:
        """
        A worker killed with SIGKILL is started again; no connection is
        refused meanwhile (those waiting in its queue are served by its
        successor), and the new worker serves.
        """
        time.sleep(0.6)
        before = self.gateway.pids()
        os.kill(before[2], signal.SIGKILL)
        # Straight away, while worker 2 is gone and being replaced.
        ports = self.manyRequests(20)
        self.gateway.waitForLog(rf"Worker 2 \(pid {before[2]}\) was killed by SIGKILL")
        [match] = self.gateway.waitForLog(r"Worker 2 \(pid (\d+)\) serving", count=2)[1:]
        after = self.gateway.pids()
        self.assertEqual(after[1], before[1])
        self.assertNotEqual(after[2], before[2])
        self.assertEqual(int(match.group(1)), after[2])
        self.assertFalse(_alive(before[2]))
        self.gateway.waitForLog("registry loaded", count=3)
        time.sleep(0.3)
        ports |= self.manyRequests(30)
        lines = self.gateway.sessionsFrom(ports)
        self.assertEqual(len(lines), 50)
        self.assertEqual({line["workerid"] for line in lines}, {"1", "2"})

    def test_sigtermStopsAll(self) -> None:
        """
        SIGTERM stops every worker and then the supervisor (which ends by
        SIGTERM, as twistd does after a signal), and leaves no process
        behind.
        """
        pids = self.gateway.pids()
        self.assertEqual(len(pids), 2)
        self.assertEqual(self.gateway.stop(), -signal.SIGTERM)
        for pid in pids.values():
            self.assertFalse(_alive(pid), pid)
        log = self.gateway.log()
        self.assertIn("Stopping 2 worker(s)", log)
        self.assertIn("Worker 1 (pid", log)
        self.assertRegex(log, r"Worker 2 \(pid \d+\) exited with status 0")

    def test_supervisorKilled(self) -> None:
        """
        Workers whose supervisor died (SIGKILL: no orderly stop) stop by
        themselves instead of serving unsupervised.
        """
        pids = self.gateway.pids()
        assert self.gateway.process is not None
        self.gateway.process.kill()
        self.gateway.process.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in pids.values()):
            self.assertLess(time.monotonic(), deadline, "a worker outlived its supervisor")
            time.sleep(0.05)

    def test_revokeReachesEveryWorker(self) -> None:
        """
        A revocation closes the device's keep-alive connection on each
        worker within a second.
        """
        time.sleep(0.6)
        held: dict[int, ssl.SSLSocket] = {}
        for _ in range(64):
            sock = self.gateway.connect(self.device)
            self.assertEqual(self.gateway.request(self.device, sock, close=False), 200)
            worker = self.gateway.servingWorker(sock)
            if worker is not None and worker not in held:
                held[worker] = sock
            else:
                sock.close()
            if len(held) == 2:
                break
        self.assertEqual(sorted(held), [1, 2])
        for sock in held.values():
            self.addCleanup(sock.close)
        result = runAdmin(["endpoint", "revoke", self.device.uid], config=self.gateway.configPath)
        self.assertEqual(result.returncode, 0, result.stderr)
        for worker, sock in held.items():
            closed = _closedWithin(sock, 2.0)
            self.assertIsNotNone(closed, f"worker {worker} kept the connection")
            self.assertLess(closed, 1.0)

    def test_sighup(self) -> None:
        """
        SIGHUP reaches every worker: after C{logrotate} moved the traffic
        log away, both write to a new file.
        """
        time.sleep(0.6)
        os.rename(self.gateway.trafficLog, self.gateway.trafficLog + ".1")
        assert self.gateway.process is not None
        self.gateway.process.send_signal(signal.SIGHUP)
        self.gateway.waitForLog(r"SIGHUP passed to 2 worker\(s\)")
        self.gateway.waitForLog(r"\[worker1 [^\]]*\] Reopening log files")
        self.gateway.waitForLog(r"\[worker2 [^\]]*\] Reopening log files")
        ports = self.manyRequests(30)
        lines = self.gateway.sessionsFrom(ports)
        self.assertEqual({line["workerid"] for line in lines}, {"1", "2"})


class GiveUpTests(TestCase):
    """
    A worker that dies again and again stops the gateway.
    """

    timeout = 180

    def test_giveUp(self) -> None:
        """
        Killed five times in a row soon after each start, worker 2 is given
        up: the gateway stops, with status 1, worker 1 too, and says why.
        """
        gateway = WorkersGateway(self.mktemp())
        gateway.start()
        self.addCleanup(gateway.stop)
        first = gateway.pids()[1]
        killed: set[int] = set()
        deadline = time.monotonic() + 60
        assert gateway.process is not None
        while gateway.process.poll() is None and time.monotonic() < deadline:
            pid = gateway.pids().get(2)
            if pid is not None and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.02)
        self.assertEqual(gateway.process.wait(30), 1)
        self.assertEqual(len(killed), 5)
        self.assertFalse(_alive(first))
        self.assertRegex(
            gateway.log(), r"Worker 2 was killed by SIGKILL: 5 failures in a row, none serving for 10 s; giving up"
        )


class StartTests(TestCase):
    """
    What the supervisor refuses before starting any worker.
    """

    timeout = 120

    def test_workerWouldFail(self) -> None:
        """
        A log file that cannot be opened stops the start at once, as with
        one process, instead of failing every worker.
        """
        gateway = WorkersGateway(self.mktemp())
        os.makedirs(gateway.trafficLog)
        gateway.start(wait=False)
        self.addCleanup(gateway.stop)
        assert gateway.process is not None
        self.assertEqual(gateway.process.wait(60), 1)
        log = gateway.log()
        self.assertIn("log-file", log)
        self.assertNotIn("Worker 1 started", log)


def _interpreterFor(uid: int, gid: int) -> tuple[str, dict[str, str]] | None:
    """
    A Python interpreter that user C{uid} can run with this environment's
    packages, and its environment: this one if it can, else the system's
    of the same version with this environment's packages on its path (a
    virtual environment made from an interpreter under a private home
    cannot be run by another user).  C{None} if there is none.
    """
    import site

    env = environment()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    extra = os.pathsep.join([env["PYTHONPATH"], *site.getsitepackages()])
    for executable, variables in (
        (sys.executable, env),
        (f"/usr/bin/python{version}", dict(env, PYTHONPATH=extra)),
    ):
        try:
            probe = subprocess.run(
                [executable, "-c", "import secrets, twisted.scripts.twistd, ztnagw.service"],
                env=variables, user=uid, group=gid, extra_groups=[], capture_output=True, timeout=60,
                cwd="/",
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return executable, variables
    return None


def _freePrivilegedPort() -> int:
    for port in range(900, 1000):
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    raise RuntimeError("no free port below 1024")


class PrivilegeTests(TestCase):
    """
    C{twistd --uid nobody} with a VIP below port 1024 (as root only).
    """

    timeout = 180

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise self.skipTest("needs root (to bind a port below 1024 and become nobody)")
        self.nobody = pwd.getpwnam("nobody")
        self.python = _interpreterFor(self.nobody.pw_uid, self.nobody.pw_gid)
        if self.python is None:
            raise self.skipTest(f"no Python interpreter with this environment's packages runs as nobody")

    def gatewayAsNobody(self, workers: int) -> WorkersGateway:
        """
        A gateway on a privileged port whose directory belongs to nobody
        (as the operator's state directory belongs to the service user).
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        # trial's directory above mktemp is private (0700).
        os.chmod(os.path.dirname(directory), 0o755)
        gateway = WorkersGateway(directory, workers=workers, vipPort=_freePrivilegedPort())
        gateway.device = gateway.issueDevice()  # type: ignore[attr-defined]
        for top, directories, files in os.walk(directory):
            for name in [top] + [os.path.join(top, n) for n in directories + files]:
                os.chown(name, self.nobody.pw_uid, self.nobody.pw_gid, follow_symlinks=False)
        gateway.start(["--uid", "nobody"], python=self.python)
        self.addCleanup(gateway.stop)
        return gateway

    def checkServes(self, gateway: WorkersGateway, pids: Sequence[int]) -> None:
        """
        Every process runs as nobody (all four uids), and the VIP serves.
        """
        for pid in pids:
            self.assertEqual(_ids(pid), [self.nobody.pw_uid] * 4)
        self.assertLess(gateway.ports["vip"], 1024)
        time.sleep(0.6)
        for _ in range(10):
            self.assertEqual(gateway.request(gateway.device), 200)  # type: ignore[attr-defined]
        status = os.stat(gateway.trafficLog)
        self.assertEqual(status.st_uid, self.nobody.pw_uid)

    def test_workers(self) -> None:
        """
        With two workers: the supervisor binds as root and drops to nobody;
        the workers run as nobody and serve the privileged port.
        """
        gateway = self.gatewayAsNobody(2)
        pids = gateway.pids()
        self.assertEqual(sorted(pids), [1, 2])
        assert gateway.process is not None
        self.checkServes(gateway, [gateway.process.pid, *pids.values()])

    def test_singleProcess(self) -> None:
        """
        With one worker, the single process binds as root and serves as
        nobody.
        """
        gateway = self.gatewayAsNobody(1)
        assert gateway.process is not None
        self.assertEqual(gateway.pids(), {})
        self.checkServes(gateway, [gateway.process.pid])

"""
Real protocols through the TCP forwarding access proxy, each with its real
server and real client from the Debian packages C{.ci/run} installs:
OpenSSH (C{ssh} through C{-L}, and through C{ProxyCommand} with
C{--stdio}), PostgreSQL (C{psql} and a short C{pgbench}), Redis
(C{redis-cli}).  Each server is a throwaway instance on a free 127.0.0.1
port with its own files in the test's directory.
"""

from __future__ import annotations

import getpass
import hashlib
import glob
import os
import shlex
import shutil
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest

from tests.integration.test_tunnel_harness import TunnelCase
from tests.support.daemon import binary, freePort, waitForPort


def _program(name: str, *directories: str) -> str:
    """
    The path of program C{name} (looked for in C{directories} first, then
    on C{PATH}).

    @raise SkipTest: it is not installed (C{.ci/run} installs it).
    """
    for directory in directories:
        for candidate in sorted(glob.glob(os.path.join(directory, name)), reverse=True):
            if os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    if found is None:
        raise SkipTest(f"{name} is not installed (.ci/run installs it)")
    return found


class _Server:
    """
    A server process started by a test, stopped at its end.
    """

    def __init__(self, command: list[str], log: str, **options: object) -> None:
        self.logPath = log
        self._log = open(log, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, **options)  # type: ignore[call-overload]

    def stop(self) -> None:
        """
        SIGTERM, then SIGKILL after 10 s.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        """
        What the server printed.
        """
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")


class ProtocolCase(TunnelCase):
    """
    A L{TunnelCase} whose real servers are started before the gateway (their
    ports go into its real servers' C{mappedport}).
    """

    def setUp(self) -> None:
        self.serverDirectory = os.path.abspath(self.mktemp())
        os.makedirs(self.serverDirectory)
        self.servicePorts = self.startServers()
        super().setUp()

    def startServers(self) -> tuple[int, ...]:
        """
        Start the real servers; their ports.
        """
        raise NotImplementedError()

    def run_(self, command: list[str], timeout: float = 120, **options: object) -> subprocess.CompletedProcess:
        """
        Run a client; it must succeed.
        """
        env = dict(self.env)
        result = subprocess.run(command, capture_output=True, timeout=timeout, env=env, **options)  # type: ignore[call-overload]
        self.assertEqual(
            result.returncode,
            0,
            f"{shlex.join(command)} failed:\n{result.stdout.decode()}\n{result.stderr.decode()}",
        )
        return result


class SSHTests(ProtocolCase):
    """
    OpenSSH through a tunnel.
    """

    def startServers(self) -> tuple[int, ...]:
        """
        A throwaway sshd on a free port, with its own host key and one
        authorized client key.
        """
        sshd = _program("sshd", "/usr/sbin")
        keygen = _program("ssh-keygen")
        self.ssh = _program("ssh")
        directory = self.serverDirectory
        for name in ("host", "client"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(directory, name)], check=True)
        shutil.copy(os.path.join(directory, "client.pub"), os.path.join(directory, "authorized_keys"))
        self.sshPort = freePort()
        config = os.path.join(directory, "sshd_config")
        with open(config, "w") as f:
            f.write(
                f"Port {self.sshPort}\nListenAddress 127.0.0.1\n"
                f"HostKey {directory}/host\nPidFile {directory}/sshd.pid\n"
                f"AuthorizedKeysFile {directory}/authorized_keys\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            )
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            # What the distribution's service starter does: sshd running as
            # root needs its privilege separation directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        server = _Server([sshd, "-D", "-e", "-f", config], os.path.join(directory, "sshd.log"))
        self.addCleanup(server.stop)
        try:
            waitForPort(self.sshPort, timeout=10)
        except TimeoutError:
            raise AssertionError(f"sshd did not start:\n{server.log()}")
        return (self.sshPort,)

    def sshCommand(self, port: int, *options: str) -> list[str]:
        """
        C{ssh} to this machine's user through C{port}, non-interactive.
        """
        return [
            self.ssh,
            "-p", str(port),
            "-i", os.path.join(self.serverDirectory, "client"),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
            *options,
            f"{getpass.getuser()}@127.0.0.1",
        ]

    def test_local(self) -> None:
        """
        C{ssh} through C{-L}: a command runs and its output (1 MiB) comes
        back whole.
        """
        forwarder = self.forwarder("-L", f"0:127.0.0.1:{self.sshPort}")
        (port,) = forwarder.listening()
        result = self.run_(self.sshCommand(port) + ["echo tunnelled; head -c 1048576 /dev/zero | sha256sum"])
        self.assertEqual(
            result.stdout.decode().split()[:2],
            ["tunnelled", "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"],
        )

    def test_proxyCommand(self) -> None:
        """
        C{ssh -o ProxyCommand='ztnagw-forward --stdio %h:%p ...'}, without
        TLS inside the tunnel (SSH encrypts itself): the forwarder is
        started by ssh for the session and ends with it; the data ssh sends
        on standard input reaches the remote command.
        """
        proxy = shlex.join(
            binary("ztnagw-forward")
            + ["--stdio", "%h:%p", "--gateway", f"127.0.0.1:{self.vipPort}", "--encryption", "off"]
        )
        payload = os.urandom(256 << 10)
        result = self.run_(
            self.sshCommand(self.sshPort, "-o", f"ProxyCommand={proxy}") + ["sha256sum"],
            input=payload,
        )
        self.assertEqual(result.stdout.decode().split()[0], hashlib.sha256(payload).hexdigest())
        # ssh closes the forwarder's pipes and hangs up on it: the tunnel
        # still ends cleanly at the gateway, and nothing was printed.
        deadline = time.monotonic() + 10
        while not self.trafficLines() and time.monotonic() < deadline:
            time.sleep(0.1)
        (line,) = self.trafficLines()
        self.assertIn('action="accept"', line)
        self.assertEqual(result.stderr, b"")


class PostgreSQLTests(ProtocolCase):
    """
    PostgreSQL through a tunnel.
    """

    def startServers(self) -> tuple[int, ...]:
        """
        A throwaway cluster (C{initdb} in the test's directory, as the
        C{postgres} user when the tests run as root), trusting local
        connections.
        """
        bins = "/usr/lib/postgresql/*/bin"
        initdb = _program("initdb", bins)
        postgres = _program("postgres", bins)
        self.psql = _program("psql")
        self.pgbench = _program("pgbench", bins)
        # The test's own directory is private to root; the cluster lives
        # where its user can reach it.
        home = tempfile.mkdtemp(prefix="ztnagw-postgres-")
        self.addCleanup(shutil.rmtree, home, True)
        data = os.path.join(home, "data")
        os.makedirs(data)
        options: dict[str, object] = {}
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            import pwd

            account = pwd.getpwnam("postgres")
            for path in (home, data):
                os.chown(path, account.pw_uid, account.pw_gid)
            options = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        created = subprocess.run(
            [initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
            capture_output=True,
            cwd=home,
            **options,  # type: ignore[arg-type]
        )
        if created.returncode != 0:
            raise AssertionError(f"initdb failed:\n{created.stdout.decode()}{created.stderr.decode()}")
        self.pgPort = freePort()
        server = _Server(
            [postgres, "-D", data, "-p", str(self.pgPort), "-k", home,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            os.path.join(self.serverDirectory, "postgres.log"),
            cwd=home,
            **options,
        )
        self.addCleanup(server.stop)
        try:
            waitForPort(self.pgPort, timeout=20)
        except TimeoutError:
            raise AssertionError(f"postgres did not start:\n{server.log()}")
        return (self.pgPort,)

    def test_psqlAndPgbench(self) -> None:
        """
        C{psql} runs a query through the tunnel; C{pgbench} loads its tables
        and runs 200 transactions from 4 clients, each client its own
        tunnel.
        """
        forwarder = self.forwarder("-L", f"0:127.0.0.1:{self.pgPort}")
        (port,) = forwarder.listening()
        connection = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        result = self.run_([self.psql, *connection, "-tAc", "select 41 + 1"])
        self.assertEqual(result.stdout.strip(), b"42")
        self.run_([self.pgbench, "-q", "-i", "-s", "1", *connection, "postgres"])
        result = self.run_([self.pgbench, "-c", "4", "-t", "50", *connection, "postgres"])
        self.assertIn(b"number of transactions actually processed: 200/200", result.stdout)


class RedisTests(ProtocolCase):
    """
    Redis through a tunnel.
    """

    def startServers(self) -> tuple[int, ...]:
        """
        A throwaway C{redis-server} without persistence.
        """
        server = _program("redis-server")
        self.cli = _program("redis-cli")
        self.redisPort = freePort()
        process = _Server(
            [server, "--port", str(self.redisPort), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.serverDirectory],
            os.path.join(self.serverDirectory, "redis.log"),
        )
        self.addCleanup(process.stop)
        try:
            waitForPort(self.redisPort, timeout=10)
        except TimeoutError:
            raise AssertionError(f"redis-server did not start:\n{process.log()}")
        return (self.redisPort,)

    def test_redisCli(self) -> None:
        """
        C{redis-cli} through an unencrypted tunnel: commands and a pipeline
        of 1,000.
        """
        forwarder = self.forwarder("--encryption", "off", "-L", f"0:127.0.0.1:{self.redisPort}")
        (port,) = forwarder.listening()
        cli = [self.cli, "-h", "127.0.0.1", "-p", str(port)]
        self.assertEqual(self.run_(cli + ["PING"]).stdout.strip(), b"PONG")
        self.assertEqual(self.run_(cli + ["SET", "tunnel", "works"]).stdout.strip(), b"OK")
        self.assertEqual(self.run_(cli + ["GET", "tunnel"]).stdout.strip(), b"works")
        commands = b"".join(b"INCR counter\n" for _ in range(1000))
        self.run_(cli, input=commands)
        self.assertEqual(self.run_(cli + ["GET", "counter"]).stdout.strip(), b"1000")

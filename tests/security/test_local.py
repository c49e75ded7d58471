"""
A local unprivileged user on the gateway host: someone with a shell who
is not the gateway's user.  What they could do with the state directory
(enroll devices with the EMS CA key, un-revoke them in the registry,
forge identity assertions, read who connected) is kept from them by file
modes and by the control socket's peer check, not by the directory
happening to be private: the test opens every directory of the state
directory to everyone (an operator's mistake) and shows that each file
still refuses the user C{nobody}.

It needs root (to act as C{nobody}); it is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

from tests.security.cases import attack
from tests.security.fixture import AttackCase

#: What C{nobody} tries, with the system Python (the test's interpreter
#: may live in a directory C{nobody} cannot enter).  Prints one JSON
#: object: attempt -> "refused" or what it got.
_ATTEMPTS = r"""
import json, os, socket, sqlite3, sys
state, vipPort = sys.argv[1], int(sys.argv[2])
results = {}
def attempt(name, action):
    try:
        action()
        results[name] = "allowed"
    except (PermissionError, sqlite3.OperationalError, ConnectionRefusedError) as e:
        results[name] = "refused"
    except OSError as e:
        results[name] = "refused" if e.errno in (1, 13, 98) else f"error {e.errno}"
def read(path):
    return lambda: open(os.path.join(state, path), "rb").read(1)
for path in ("ems1/ca.key", "ems1/listener.key", "gateway.key", "identity/identity.key",
             "persistence.key", "ems1/registry.sqlite", "../traffic.log"):
    attempt("read " + path, read(path))
def writeRegistry():
    connection = sqlite3.connect(os.path.join(state, "ems1/registry.sqlite"), timeout=1)
    connection.execute("UPDATE endpoints SET revoked = 0")
    connection.commit()
attempt("write the registry", writeRegistry)
def control():
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(state, "control/ztnagw.sock"))
    s.sendall(b'{"command": "realserver list", "arguments": {}}\n')
    answer = s.recv(65536)
    if b'"ok": true' in answer or b'"ok":true' in answer:
        return
    raise PermissionError(answer)
attempt("use the control socket", control)
def steal():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", vipPort))
    s.listen(1)
attempt("bind the VIP's port (SO_REUSEPORT)", steal)
print(json.dumps(results))
"""


class LocalUserTests(AttackCase):
    """
    The state directory and the daemon's local interfaces against another
    user of the host.
    """

    def setUp(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("acting as another user needs root")
        python = shutil.which("python3", path="/usr/bin:/bin")
        if python is None:
            self.skipTest("no system python3 that nobody can run")
        self.python = python
        AttackCase.setUp(self)

    @attack(
        "local",
        "a local unprivileged user reads keys, the registry and the traffic log, writes the registry, uses the "
        "control socket, binds the VIP's port (state directories opened to everyone)",
        "every attempt refused: keys, registry and log 0600, control socket owner-only (peer check), port bound",
    )
    def test_localUser(self) -> None:
        """
        As C{nobody}, with every directory on the way opened to everyone,
        each file of value and each local interface refuses.
        """
        g = self.gateway
        opened = []
        for root, directories, _ in os.walk(g.directory):
            for name in [""] + directories:
                path = os.path.join(root, name) if name else root
                mode = stat.S_IMODE(os.stat(path).st_mode)
                opened.append((path, mode))
                os.chmod(path, mode | 0o055)
        self.addCleanup(lambda: [os.chmod(path, mode) for path, mode in opened])
        result = subprocess.run(
            [self.python, "-c", _ATTEMPTS, g.stateDir, str(g.ports["WEB"])],
            capture_output=True,
            user="nobody",
            group="nogroup",
            cwd="/",
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        attempts = json.loads(result.stdout)
        self.assertEqual(len(attempts), 10, attempts)
        self.assertEqual({name: outcome for name, outcome in attempts.items() if outcome != "refused"}, {})
        self.assertNothingReached()
        g.checkServing(self)

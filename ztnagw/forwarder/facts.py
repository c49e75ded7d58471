# -*- test-case-name: tests.forwarder.test_agent -*-
"""
What the agent reports about its device: identity facts and posture facts.

Every report (C{docs/ems.md}, "Telemetry") carries the host name, the
operating system and its version, the forwarder's version, the logged-on
user, and the device's IP and MAC addresses, plus posture facts that
tagging rules can test.  The built-in posture facts are the ones this
agent can establish honestly, without privileges, on Linux (on other
systems, those it cannot read are left out rather than guessed):

  - C{os.kernel}: the kernel release;
  - C{os.distribution}, C{os.distribution-version}: C{ID} and
    C{VERSION_ID} of C{/etc/os-release};
  - C{disk.root-encrypted}: C{true} when the root file system sits on a
    dm-crypt (LUKS) device, C{false} when it is on a plain block device;
  - C{secure-boot}: C{true} or C{false} from the firmware's SecureBoot
    variable, when the machine booted with EFI.

An administrator's own checks come from a posture command
(C{ztnagw-forward agent --posture-command CMD}): it prints one JSON object
of facts, and L{runPostureCommand} bounds it in time and size; the fact
C{agent.posture-command} says whether it succeeded (C{ok}) or not
(C{failed}, C{timeout}, C{invalid}), so that a rule can require it.

Reading the system (L{collectReport}) blocks on small files: the agent
calls it in a thread.
"""

from __future__ import annotations

import fcntl
import getpass
import ipaddress
import json
import os
import platform
import socket
import struct
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from ztnagw import __version__
from ztnagw.ems.api import MAX_FACT_VALUE, MAX_FACTS, DeviceReport
from ztnagw.ems.conditions import isFactName

__all__ = [
    "POSTURE_OUTPUT_LIMIT",
    "POSTURE_TIMEOUT",
    "builtinFacts",
    "collectReport",
    "interfaceAddresses",
    "parsePostureOutput",
    "runPostureCommand",
]

#: The longest a posture command may run, in seconds.
POSTURE_TIMEOUT = 10.0

#: The most a posture command may print, in bytes.
POSTURE_OUTPUT_LIMIT = 64 * 1024

#: The fact telling how the posture command went.
POSTURE_STATUS_FACT = "agent.posture-command"

_SIOCGIFADDR = 0x8915
_SECURE_BOOT = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _read(path: str, limit: int = 65536) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _osRelease(root: str = "/") -> dict[str, str]:
    values: dict[str, str] = {}
    for name in ("etc/os-release", "usr/lib/os-release"):
        text = _read(os.path.join(root, name))
        if text is None:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().isidentifier():
                values[key.strip()] = value.strip().strip("\"'")
        break
    return values


def _rootEncrypted(root: str = "/") -> str | None:
    """
    Whether C{/} is on a dm-crypt device, from C{/proc/self/mountinfo} and
    C{/sys/dev/block}; C{None} when it cannot be told (a network or
    overlay root, an unreadable table).
    """
    mountinfo = _read(os.path.join(root, "proc/self/mountinfo"), 1024 * 1024)
    if mountinfo is None:
        return None
    device = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            device = fields[2]
    if device is None or device.startswith("0:"):
        # Major 0: not a block device (overlay, tmpfs, a container).
        return None
    return "true" if _onCrypt(os.path.join(root, "sys/dev/block", device), 0) else "false"


def _onCrypt(blockPath: str, depth: int) -> bool:
    if depth > 8:
        return False
    uuid = _read(os.path.join(blockPath, "dm", "uuid"))
    if uuid is not None and uuid.startswith("CRYPT-"):
        return True
    # A partition's holders chain ends in the crypt device for LVM on LUKS;
    # a dm device's slaves lead to it for LUKS under LVM.
    slaves = os.path.join(blockPath, "slaves")
    try:
        names = os.listdir(slaves)
    except OSError:
        return False
    return any(_onCrypt(os.path.join(slaves, name), depth + 1) for name in names)


def _secureBoot() -> str | None:
    try:
        with open(_SECURE_BOOT, "rb") as f:
            data = f.read(16)
    except OSError:
        return None
    # Four bytes of attributes, then the one-byte value.
    if len(data) < 5:
        return None
    return "true" if data[4] == 1 else "false"


def builtinFacts() -> dict[str, str]:
    """
    The built-in posture facts of this device (see the module docstring).
    """
    facts: dict[str, str] = {}
    release = platform.release()
    if release:
        facts["os.kernel"] = release[:MAX_FACT_VALUE]
    if platform.system() == "Linux":
        osRelease = _osRelease()
        if osRelease.get("ID"):
            facts["os.distribution"] = osRelease["ID"][:MAX_FACT_VALUE]
        if osRelease.get("VERSION_ID"):
            facts["os.distribution-version"] = osRelease["VERSION_ID"][:MAX_FACT_VALUE]
        encrypted = _rootEncrypted()
        if encrypted is not None:
            facts["disk.root-encrypted"] = encrypted
        secureBoot = _secureBoot()
        if secureBoot is not None:
            facts["secure-boot"] = secureBoot
    return facts


def _osDescription() -> tuple[str, str | None]:
    system = platform.system()
    if system == "Darwin":
        return "macOS", platform.mac_ver()[0] or None
    if system == "Windows":
        return "Windows", platform.version() or None
    if system == "Linux":
        osRelease = _osRelease()
        return "Linux", osRelease.get("VERSION_ID") or platform.release() or None
    return system or "unknown", platform.release() or None


def _ipv4Of(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def interfaceAddresses() -> tuple[list[str], list[str]]:
    """
    The device's IP addresses (IPv4 first, then global IPv6) and MAC
    addresses, loopback and link-local left out.  Linux reads them from
    the kernel; elsewhere the host name's addresses stand in, without MACs.
    """
    ips: list[str] = []
    macs: list[str] = []
    if platform.system() != "Linux":
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None):
                address = ipaddress.ip_address(info[4][0])
                if not (address.is_loopback or address.is_link_local) and str(address) not in ips:
                    ips.append(str(address))
        except OSError:
            pass
        return ips, macs
    try:
        interfaces = [name for _, name in socket.if_nameindex()]
    except OSError:
        interfaces = []
    for name in interfaces:
        if name == "lo":
            continue
        address = _ipv4Of(name)
        if address is not None and not ipaddress.ip_address(address).is_loopback and address not in ips:
            ips.append(address)
        mac = (_read(f"/sys/class/net/{name}/address") or "").strip().lower()
        if mac and mac != "00:00:00:00:00:00" and len(mac) == 17 and mac not in macs:
            macs.append(mac)
    for line in (_read("/proc/net/if_inet6") or "").splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[5] == "lo":
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        except ValueError:
            continue
        if address.is_link_local or address.is_loopback or str(address) in ips:
            continue
        ips.append(str(address))
    return ips[:32], macs[:32]


def collectReport(extraFacts: dict[str, str] | None = None) -> DeviceReport:
    """
    What this device reports about itself now.  Blocks on small files.

    @param extraFacts: facts from the posture command; the built-in ones
        win on a name clash (a posture command cannot impersonate them).
    """
    osType, osVersion = _osDescription()
    ips, macs = interfaceAddresses()
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    facts: dict[str, str] = {}
    for name, value in (extraFacts or {}).items():
        if len(facts) < MAX_FACTS - 8:
            facts[name] = value
    facts.update(builtinFacts())
    return DeviceReport(
        hostName=socket.gethostname()[:255] or None,
        osType=osType,
        osVersion=osVersion[:128] if osVersion else None,
        clientVersion=__version__,
        user=user,
        ips=tuple(ips),
        macs=tuple(macs),
        facts=facts,
    )


def parsePostureOutput(output: bytes) -> dict[str, str]:
    """
    Read a posture command's output: one JSON object whose keys are fact
    names and whose values are text, integers or booleans.

    @raise ValueError: anything else; the message says what.
    """
    try:
        value = json.loads(output.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the posture command did not print a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("the posture command did not print a JSON object")
    if len(value) > MAX_FACTS - 8:
        raise ValueError(f"the posture command printed more than {MAX_FACTS - 8} facts")
    facts: dict[str, str] = {}
    for name, item in value.items():
        if not isFactName(name):
            raise ValueError(f"{name[:40]!r} is not a fact name (letters, digits, _ . -)")
        if isinstance(item, bool):
            facts[name] = "true" if item else "false"
        elif isinstance(item, int) and abs(item) < 10**18:
            facts[name] = str(item)
        elif isinstance(item, str) and len(item) <= MAX_FACT_VALUE and item.isprintable():
            facts[name] = item
        else:
            raise ValueError(f"fact {name!r} must be short text, an integer or true/false")
    return facts


class _PostureProcess(ProcessProtocol):
    """
    Collects a posture command's output, within bounds.
    """

    def __init__(self, done: Deferred[tuple[str, bytes]], limit: int) -> None:
        self._done = done
        self._limit = limit
        self._output: list[bytes] = []
        self._size = 0
        self.outcome: str | None = None

    def connectionMade(self) -> None:
        """
        Close the command's standard input: it has nothing to read.
        """
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        """
        Keep stdout up to the limit; kill the command past it.
        """
        self._size += len(data)
        if self._size > self._limit:
            if self.outcome is None:
                self.outcome = "invalid"
                self.transport.signalProcess("KILL")
            return
        self._output.append(data)

    def processEnded(self, reason: Failure) -> None:
        """
        Report how it ended.
        """
        if self.outcome is None:
            self.outcome = "ok" if reason.check(ProcessDone) else "failed"
        self._done.callback((self.outcome, b"".join(self._output)))


def runPostureCommand(
    reactor: Any,
    argv: Sequence[str],
    timeout: float = POSTURE_TIMEOUT,
    limit: int = POSTURE_OUTPUT_LIMIT,
    spawn: Callable[..., Any] | None = None,
) -> Deferred[dict[str, str]]:
    """
    Run the posture command and read its facts.

    @param argv: the command and its arguments (run directly, not by a
        shell).
    @param timeout: seconds before it is killed.
    @param limit: bytes of output accepted.
    @return: fires with the facts it printed plus
        C{agent.posture-command}: C{ok}; or with only that fact saying
        C{failed} (non-zero exit or not startable), C{timeout} or
        C{invalid} (not a JSON object of facts, or too much output).
        Never fails.
    """
    done: Deferred[tuple[str, bytes]] = Deferred()
    protocol = _PostureProcess(done, limit)
    try:
        (spawn or reactor.spawnProcess)(
            protocol, argv[0], list(argv), env=dict(os.environ), childFDs={0: "w", 1: "r", 2: 2}
        )
    except OSError:
        return _posture("failed")
    timer = reactor.callLater(timeout, _kill, protocol)

    def ended(result: tuple[str, bytes]) -> dict[str, str]:
        if timer.active():
            timer.cancel()
        outcome, output = result
        if outcome != "ok":
            return {POSTURE_STATUS_FACT: outcome}
        try:
            facts = parsePostureOutput(output)
        except ValueError:
            return {POSTURE_STATUS_FACT: "invalid"}
        facts[POSTURE_STATUS_FACT] = "ok"
        return facts

    return done.addCallback(ended)


def _kill(protocol: _PostureProcess) -> None:
    if protocol.outcome is None:
        protocol.outcome = "timeout"
        try:
            protocol.transport.signalProcess("KILL")
        except Exception:
            pass


def _posture(outcome: str) -> Deferred[dict[str, str]]:
    d: Deferred[dict[str, str]] = Deferred()
    d.callback({POSTURE_STATUS_FACT: outcome})
    return d

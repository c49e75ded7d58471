# -*- test-case-name: tests.forwarder.test_enroll,tests.forwarder.test_agent -*-
"""
The C{ztnagw-forward} console script.

Three subcommands manage the device; anything else is the forwarder
itself:

  - C{ztnagw-forward enroll --ems https://HOST:PORT --token TOKEN
    [--ca-file FILE | --pin SHA256] [--profile NAME|DIR]}: enroll and store
    the profile (L{ztnagw.forwarder.enroll});
  - C{ztnagw-forward agent [--interval S] [--posture-command CMD]}: report
    telemetry until stopped (L{ztnagw.forwarder.agent});
  - C{ztnagw-forward status}: show the profile;
  - C{ztnagw-forward -L ...}, C{-D ...}, C{--stdio ...}, C{--rules ...}:
    forward TCP through a gateway (L{ztnagw.forwarder.forward}).

Files are read and keys made before the reactor starts; the network work
runs under C{task.react}.  Results go to standard output, problems to
standard error; the exit status is 0 on success, 1 on failure and 2 for a
bad command line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
from typing import Any, Sequence, TextIO

from cryptography import x509

from ztnagw import __version__

__all__ = ["SUBCOMMANDS", "main"]

#: The first arguments that select a subcommand rather than the forwarder.
SUBCOMMANDS = ("enroll", "agent", "status")

_USAGE = """\
usage: ztnagw-forward enroll --ems https://HOST:PORT --token TOKEN [--ca-file FILE | --pin SHA256] [--profile NAME|DIR]
       ztnagw-forward agent [--profile NAME|DIR] [--interval S] [--posture-command CMD]
       ztnagw-forward status [--profile NAME|DIR]
       ztnagw-forward [forwarder options: -L, -D, --stdio, --rules ...]

The FortiClient role of ztnagw: enroll this device with an EMS, keep it
online with telemetry, and forward TCP connections through a gateway.
'ztnagw-forward COMMAND --help' explains each command.
"""


class _Failed(Exception):
    """
    The command cannot go on; the message is for the user.
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"ztnagw-forward {name}")
    parser.add_argument(
        "--profile",
        metavar="NAME|DIR",
        default=None,
        help="the device profile: a name (in $XDG_CONFIG_HOME/ztnagw-forward) or a "
        "directory path (default: 'default')",
    )
    return parser


def _enrollParser() -> argparse.ArgumentParser:
    parser = _parser("enroll")
    parser.description = (
        "Enroll this device with an EMS: make a key and a CSR, send them with the "
        "enrollment token, and store the device certificate in the profile.  The EMS "
        "is checked with --pin or --ca-file before the token is sent."
    )
    parser.add_argument("--ems", metavar="URL", required=True, help="the EMS, https://HOST:PORT")
    token = parser.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", metavar="TOKEN", help="the enrollment token ('-' reads it from standard input)")
    token.add_argument("--token-file", metavar="FILE", help="read the token from FILE (keeps it out of 'ps')")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--ca-file", metavar="FILE", help="the EMS CA certificate (PEM)")
    trust.add_argument("--pin", metavar="SHA256", help="the EMS listener's public key pin (sha256:...)")
    parser.add_argument("--gateway", metavar="HOST:PORT", help="the default gateway to record in the profile")
    parser.add_argument(
        "--new-device",
        action="store_true",
        help="enroll as a new device (new UID) even if the profile holds one",
    )
    return parser


def _agentParser() -> argparse.ArgumentParser:
    parser = _parser("agent")
    parser.description = (
        "Report telemetry to the EMS over mutual TLS, keeping the device online, "
        "until stopped (SIGINT, SIGTERM)."
    )
    parser.add_argument(
        "--interval",
        metavar="S",
        type=float,
        default=None,
        help="seconds between reports (default: what the EMS asks for)",
    )
    parser.add_argument(
        "--posture-command",
        metavar="CMD",
        default=None,
        help="a command printing a JSON object of posture facts (run without a shell, "
        "at most 10 s, 64 KiB of output)",
    )
    parser.add_argument("--once", action="store_true", help="send one report and exit")
    return parser


def _statusParser() -> argparse.ArgumentParser:
    parser = _parser("status")
    parser.description = "Show the device profile."
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    return parser


def _readToken(arguments: argparse.Namespace) -> str:
    if arguments.token_file is not None:
        try:
            with open(arguments.token_file, encoding="utf-8") as f:
                text = f.read(4096)
        except OSError as e:
            raise _Failed(f"cannot read {arguments.token_file}: {e.strerror}")
    elif arguments.token == "-":
        text = sys.stdin.read(4096)
    else:
        text = arguments.token
    text = text.strip()
    if not text:
        raise _Failed("the token is empty")
    return text


def _plan(arguments: argparse.Namespace) -> Any:
    from ztnagw.forwarder.enroll import EnrollmentPlan
    from ztnagw.forwarder.profile import (
        ProfileError,
        loadProfile,
        parseEmsUrl,
        parseHostPort,
        profileDirectory,
    )
    from ztnagw.tls.client import parsePin

    try:
        host, port = parseEmsUrl(arguments.ems)
        pin = parsePin(arguments.pin) if arguments.pin is not None else None
        if arguments.gateway is not None:
            parseHostPort(arguments.gateway)
        directory = profileDirectory(arguments.profile)
    except (ValueError, ProfileError) as e:
        raise _Failed(str(e), 2)
    authorities: tuple[x509.Certificate, ...] = ()
    if arguments.ca_file is not None:
        try:
            with open(arguments.ca_file, "rb") as f:
                authorities = tuple(x509.load_pem_x509_certificates(f.read(1 << 20)))
        except OSError as e:
            raise _Failed(f"cannot read --ca-file {arguments.ca_file}: {e.strerror}")
        except ValueError:
            raise _Failed(f"--ca-file {arguments.ca_file} does not hold PEM certificates")
    existing = None
    if not arguments.new_device and os.path.exists(os.path.join(directory, "profile.json")):
        try:
            existing = loadProfile(directory)
        except ProfileError as e:
            raise _Failed(
                f"the profile in {directory} cannot be used ({e}); enroll with "
                "--new-device to replace it, or choose another --profile"
            )
    return EnrollmentPlan(
        emsUrl=f"https://{host if ':' not in host else f'[{host}]'}:{port}",
        host=host,
        port=port,
        token=_readToken(arguments),
        pin=pin,
        caCertificates=authorities,
        directory=directory,
        existing=existing,
        gateway=arguments.gateway,
    )


def _runEnroll(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = _plan(arguments)
    from twisted.internet import reactor, task

    from ztnagw.forwarder.enroll import EnrollmentFailed, enroll, pinAdvice, probePin
    from ztnagw.forwarder.facts import collectReport
    from ztnagw.forwarder.profile import ProfileError

    if plan.pin is None and not plan.caCertificates:

        async def probe(reactor: Any) -> None:
            try:
                pin = await probePin(reactor, plan.host, plan.port)
            except EnrollmentFailed as e:
                raise _Failed(
                    "refusing to send the token to an EMS that is not verified: give "
                    f"--pin or --ca-file ({e.message})"
                )
            raise _Failed(pinAdvice(plan.emsUrl, pin))

        return _react(task, probe, err)
    report = collectReport()

    async def run(reactor: Any) -> None:
        try:
            profile = await enroll(reactor, plan, report)
        except EnrollmentFailed as e:
            code = f" ({e.code})" if e.code else ""
            raise _Failed(f"enrollment refused{code}: {e.message}")
        except ProfileError as e:
            raise _Failed(f"enrolled, but the profile cannot be stored: {e}; enroll again")
        verb = "Re-enrolled" if plan.existing is not None else "Enrolled"
        out.write(f"{verb} with {plan.emsUrl}\n")
        out.write(f"  UID:                {profile.uid}\n")
        out.write(f"  certificate serial: {profile.certSerial}\n")
        out.write(f"  profile:            {profile.directory}\n")
        if profile.gateway:
            out.write(f"  gateway:            {profile.gateway}\n")
        out.write("Keep the device online with: ztnagw-forward agent" + _profileArgument(arguments) + "\n")

    return _react(task, run, err)


def _profileArgument(arguments: argparse.Namespace) -> str:
    return f" --profile {arguments.profile}" if arguments.profile else ""


def _react(task: Any, function: Any, err: TextIO) -> int:
    status: list[int] = [0]

    async def wrapped(reactor: Any) -> None:
        try:
            await function(reactor)
        except _Failed as e:
            err.write(f"ztnagw-forward: {e.message}\n")
            status[0] = e.status

    try:
        task.react(wrapped)
    except SystemExit as e:
        if e.code:
            return int(e.code) if isinstance(e.code, int) else 1
    return status[0]


def _loadProfile(arguments: argparse.Namespace) -> Any:
    from ztnagw.forwarder.profile import ProfileError, loadProfile, profileDirectory

    try:
        return loadProfile(profileDirectory(arguments.profile))
    except ProfileError as e:
        raise _Failed(str(e))


def _runAgent(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ztnagw.forwarder.agent import TelemetryService, parsePostureCommand

    if arguments.interval is not None and not 1 <= arguments.interval <= 3600:
        raise _Failed("--interval is between 1 and 3600 seconds", 2)
    posture = None
    if arguments.posture_command is not None:
        try:
            posture = parsePostureCommand(arguments.posture_command)
        except ValueError as e:
            raise _Failed(f"--posture-command: {e}", 2)
    profile = _loadProfile(arguments)
    from twisted.internet import reactor, task
    from twisted.logger import LogLevel, LogLevelFilterPredicate, FilteringLogObserver, globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(err), [LogLevelFilterPredicate(LogLevel.info)])],
        redirectStandardIO=False,
    )
    service = TelemetryService(reactor, profile, arguments.interval, posture)

    if arguments.once:

        async def once(reactor: Any) -> None:
            result = await service.reportNow()
            if not result.ok:
                assert result.error is not None
                raise _Failed(f"the EMS did not record the report: {result.error.message}")
            out.write(f"Reported to {profile.emsUrl} as {profile.uid}\n")

        return _react(task, once, err)

    async def forever(reactor: Any) -> None:
        from twisted.internet.defer import Deferred

        stopped: Deferred[None] = Deferred()
        service.startService()

        def stop(*_: object) -> None:
            if not stopped.called:
                stopped.callback(None)

        reactor.addSystemEventTrigger("before", "shutdown", stop)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: reactor.callFromThread(stop))
        out.write(f"Reporting to {profile.emsUrl} as {profile.uid}\n")
        out.flush()
        await stopped
        await service.stopService()

    return _react(task, forever, err)


def _runStatus(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ztnagw.ems.keys import describeKey, fingerprint
    from ztnagw.tls.client import formatPin

    profile = _loadProfile(arguments)
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = profile.certificate
    end = certificate.not_valid_after_utc
    state = "valid" if certificate.not_valid_before_utc <= now < end else "NOT valid now"
    values = {
        "profile": profile.directory,
        "uid": profile.uid,
        "certSerial": profile.certSerial,
        "certificateValidUntil": end.strftime("%Y-%m-%d %H:%M UTC"),
        "certificateState": state,
        "key": describeKey(profile.privateKey),
        "ems": profile.emsUrl,
        "emsPin": formatPin(profile.emsPin) if profile.emsPin is not None else None,
        "gateway": profile.gateway,
        "caCertificates": [fingerprint(ca) for ca in profile.caCertificates],
        "enrolledAt": profile.enrolledAt,
    }
    if arguments.json:
        out.write(json.dumps(values, indent=2) + "\n")
        return 0
    out.write(f"Profile {profile.directory}\n")
    rows = [
        ("UID", profile.uid),
        ("certificate serial", profile.certSerial),
        ("certificate", f"{state}, until {values['certificateValidUntil']} ({values['key']})"),
        ("EMS", profile.emsUrl + (f" (pin {values['emsPin']})" if values["emsPin"] else "")),
        ("gateway", profile.gateway or "-"),
        ("enrolled", profile.enrolledAt or "-"),
    ]
    rows += [("EMS CA", value) for value in values["caCertificates"]]
    for name, value in rows:
        out.write(f"  {name + ':':<20}{value}\n")
    return 0


def _forward(argv: Sequence[str], err: TextIO) -> int:
    try:
        from ztnagw.forwarder import forward
    except ImportError:
        err.write(
            "ztnagw-forward: the TCP forwarder is not available in this build; "
            "the commands are enroll, agent and status\n"
        )
        return 2
    return forward.main(list(argv))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """
    Run C{ztnagw-forward}.

    @param argv: the arguments after the program name; C{sys.argv[1:]} by
        default.
    @return: the exit status.
    """
    if argv is None:
        argv = sys.argv[1:]
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if not argv or argv[0] in ("-h", "--help", "help"):
        out.write(_USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        out.write(f"ztnagw-forward {__version__}\n")
        return 0
    if argv[0] not in SUBCOMMANDS:
        return _forward(argv, err)
    parsers = {"enroll": _enrollParser, "agent": _agentParser, "status": _statusParser}
    runners = {"enroll": _runEnroll, "agent": _runAgent, "status": _runStatus}
    try:
        arguments = parsers[argv[0]]().parse_args(argv[1:])
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else 2
    try:
        return runners[argv[0]](arguments, out, err)
    except _Failed as e:
        err.write(f"ztnagw-forward: {e.message}\n")
        return e.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

# -*- test-case-name: tests.config.test_cli_config -*-
"""
C{ztnagw config check} and C{ztnagw config show}.

An operator edits the configuration by hand (often pasting FortiGate
output), so the first thing they need is a check that lists every problem
with its C{file:line}, and a way to see the configuration as ztnagw
understood it, defaults included.
"""

from __future__ import annotations

import argparse
import sys

from ztnagw.cli._common import CommandFailed, addConfigOption, runCommand

__all__ = ["addCommands"]


def addCommands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """
    Register C{config check} and C{config show}.
    """
    area = subparsers.add_parser(
        "config",
        help="check or show the gateway configuration",
        description="Check or show the gateway configuration (FortiOS CLI syntax).",
    )
    commands = area.add_subparsers(title="config commands", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check",
        help="check a configuration and list every problem",
        description="Load a configuration as the gateway would, and print every "
        "problem as FILE:LINE: MESSAGE (exit status 1), or a one-line summary "
        "of what it defines (exit status 0).  Warnings and notes (certificates "
        "the gateway will generate at start) are printed in the same form.",
    )
    _addFile(check)
    check.set_defaults(func=lambda arguments: runCommand(_check, arguments))

    show = commands.add_parser(
        "show",
        help="print the configuration as ztnagw understands it",
        description="Print the configuration in FortiOS CLI syntax, normalized: "
        "only the options set explicitly, like FortiOS 'show', or every option "
        "with its value, like 'show full-configuration'.  Private keys and "
        "passwords are left out unless --secrets is given.",
    )
    show.add_argument(
        "--full",
        action="store_true",
        help="print every option, defaults included",
    )
    show.add_argument(
        "--secrets",
        action="store_true",
        help="print private keys and passwords (by default they are written "
        "'ENC redacted', so that the output can be shared)",
    )
    _addFile(show)
    show.set_defaults(func=lambda arguments: runCommand(_show, arguments))


def _addFile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        default=None,
        help="the configuration (default: --config, else $ZTNAGW_CONFIG, else "
        "/etc/ztnagw/ztnagw.conf)",
    )
    addConfigOption(parser)


def _path(arguments: argparse.Namespace) -> str:
    from ztnagw.cli import defaultConfigPath

    if arguments.file is not None and arguments.config is not None:
        if arguments.file != arguments.config:
            raise CommandFailed("give the configuration file once: FILE or --config", status=2)
    return arguments.file or arguments.config or defaultConfigPath()


def _load(path: str):  # type: ignore[no-untyped-def]
    from ztnagw.config import load

    try:
        return load(path)
    except OSError as e:
        raise CommandFailed(f"cannot read configuration {path}: {e.strerror}")


def _check(arguments: argparse.Namespace) -> int:
    from ztnagw.config.certificates import isPendingGeneration
    from ztnagw.config.tree import ConfigurationRejected

    path = _path(arguments)
    try:
        config = _load(path)
    except ConfigurationRejected as e:
        for error in e.errors:
            print(error)
        count = len(e.errors)
        print(f"{path}: {count} error{'s' if count != 1 else ''}; the configuration is rejected")
        return 1
    for warning in config.warnings:
        location = f"{warning.location}: " if warning.location else ""
        print(f"{location}warning: {warning.message}")
    pending = []
    for name, certificate in config.localCertificates.items():
        if isPendingGeneration(certificate):
            pending.append(name)
            location = f"{certificate.location}: " if certificate.location else ""
            print(
                f"{location}note: vpn certificate local \"{name}\": "
                f"{certificate.certificateFile} and {certificate.privateKeyFile} "
                "do not exist yet; the gateway creates them at start (auto-generate)"
            )
    print(f"{path}: OK: {summary(config, len(pending))}")
    return 0


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


def summary(config, pendingCertificates: int = 0) -> str:  # type: ignore[no-untyped-def]
    """
    One line saying what a configuration defines.
    """
    gateways = [g for p in config.accessProxies.values() for g in p.apiGateways.values()]
    servers = sum(len(g.realServers) for g in gateways)
    enabledEms = sum(1 for e in config.emsConnectors.values() if e.status)
    certificates = _count(len(config.localCertificates), "local certificate")
    if pendingCertificates:
        certificates += f" ({pendingCertificates} to be generated)"
    return ", ".join(
        [
            _count(len(config.vips), "VIP"),
            _count(len(config.accessProxies), "access proxy", "access proxies"),
            _count(len(gateways), "api-gateway"),
            _count(servers, "real server"),
            _count(len(config.virtualHosts), "virtual host"),
            _count(len(config.policies), "firewall policy", "firewall policies"),
            _count(len(config.proxyPolicies), "proxy policy", "proxy policies"),
            _count(len(config.emsConnectors), "EMS connector") + f" ({enabledEms} enabled)",
            certificates,
        ]
    )


def _show(arguments: argparse.Namespace) -> int:
    from ztnagw.config import show
    from ztnagw.config.tree import ConfigurationRejected

    path = _path(arguments)
    try:
        config = _load(path)
    except ConfigurationRejected as e:
        raise CommandFailed(
            f"configuration {path} is invalid:\n" + "\n".join(str(error) for error in e.errors)
        )
    sys.stdout.write(show(config, full=arguments.full, redact=not arguments.secrets))
    return 0

# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's options and service: C{twistd -n ztnagw --config FILE}.

Loading and checking the configuration, creating missing EMS CAs and
certificates, and opening the registries happen here, before the reactor
runs, so that a gateway that cannot work refuses to start with the reason on
stderr and a non-zero exit status, instead of starting half-configured.
When twistd is to drop privileges (C{--uid}/C{--gid}), that work is done
as the user it drops to (L{ztnagw.privileges}); only binding the ports
happens as root.

C{set workers 1} (the default) makes the daemon one process, the
L{GatewayService<ztnagw.service.GatewayService>}.  More workers make it a
supervisor of that many worker processes (L{ztnagw.supervisor}); its exit
status is 1 if it had to give up on a worker.
"""

from __future__ import annotations

import atexit
import os
import sys

from twisted.application.service import IService
from twisted.python import usage

from ztnagw.cli import defaultConfigPath


class Options(usage.Options):
    """
    Command-line options of the C{ztnagw} twistd plugin.
    """

    synopsis = "[--config FILE]"
    longdesc = (
        "Run the ztnagw zero-trust access gateway: the access-proxy VIPs "
        "(HTTPS access proxy and TCP forwarding access proxy) and the EMS "
        "role, as configured in FortiOS CLI syntax."
    )
    optParameters = [
        [
            "config",
            "c",
            None,
            "gateway configuration file (default: $ZTNAGW_CONFIG, else "
            f"{defaultConfigPath()})",
        ],
    ]

    def postOptions(self) -> None:
        """
        Fill in the default configuration path.
        """
        if self["config"] is None:
            self["config"] = defaultConfigPath()


def _refuse(message: str) -> None:
    sys.stderr.write(f"ztnagw: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def makeService(options: Options) -> IService:
    """
    Build the gateway service from the configuration named in C{options}.

    Exits the process with status 1 and the reasons on stderr when the
    configuration is invalid or the gateway cannot be prepared.
    """
    from twisted.internet import reactor

    from ztnagw.privileges import startupIdentity, twistdIdentity

    uid, gid = twistdIdentity(options)
    with startupIdentity(uid, gid):
        return _makeService(options, reactor, asUser=uid)


def _makeService(options: Options, reactor: object, asUser: int | None) -> IService:
    from ztnagw.config import ConfigurationRejected, load
    from ztnagw.service import GatewayService
    from ztnagw.startup import StartupFailed, prepare
    from ztnagw.supervisor import GatewaySupervisor, workerCount
    from ztnagw.workers import PlanError

    path = options["config"]
    hint = "" if asUser is None else f" (the gateway runs as uid {asUser}: --uid)"
    try:
        config = load(path)
    except ConfigurationRejected as e:
        _refuse(
            f"configuration {path} is invalid:\n"
            + "\n".join(str(error) for error in e.errors)
        )
    except OSError as e:
        _refuse(f"cannot read configuration {path}: {e.strerror or e}{hint}")
    try:
        prepared = prepare(config)
    except StartupFailed as e:
        _refuse(f"{e}{hint}")
    workers = workerCount(config.systemGlobal.workers)
    configPath = os.path.abspath(path)
    try:
        if workers == 1:
            return GatewayService(prepared, reactor, configPath=configPath)
        # Build a worker's gateway once here, without starting it: what a
        # worker would refuse (a log file it cannot open, a key it cannot
        # read) stops the daemon now with the reason, as with one process,
        # instead of failing every worker in turn; and what the gateway
        # creates in the state directory as it is built is created once.
        GatewayService(prepared, reactor, configPath=configPath, workerId=1, workers=workers).logWriter.close()
        supervisor = GatewaySupervisor(prepared, reactor, workers, configPath=configPath)
    except (StartupFailed, PlanError) as e:
        _refuse(f"{e}{hint}")
    atexit.register(_exitWith, supervisor.workers)
    return supervisor


def _exitWith(workers: object) -> None:
    # twistd exits 0 whenever its reactor stopped; a supervisor that gave
    # up on a worker must not look like a clean stop to systemd or a
    # shell.  This runs after twistd removed its pid file.
    status = getattr(workers, "exitStatus", 0)
    if status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's options and service: C{twistd -n ztnagw --config FILE}.

Loading and checking the configuration, creating missing EMS CAs and
certificates, and opening the registries happen here, before the reactor
runs, so that a gateway that cannot work refuses to start with the reason on
stderr and a non-zero exit status, instead of starting half-configured.
"""

from __future__ import annotations

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

    from ztnagw.config import ConfigurationRejected, load
    from ztnagw.service import GatewayService
    from ztnagw.startup import StartupFailed, prepare

    path = options["config"]
    try:
        config = load(path)
    except ConfigurationRejected as e:
        _refuse(
            f"configuration {path} is invalid:\n"
            + "\n".join(str(error) for error in e.errors)
        )
    except OSError as e:
        _refuse(f"cannot read configuration {path}: {e.strerror or e}")
    try:
        prepared = prepare(config)
    except StartupFailed as e:
        _refuse(str(e))
    return GatewayService(prepared, reactor, configPath=os.path.abspath(path))

"""
Helpers shared by the configuration model tests: short valid
configurations to start from, and ways to look at the errors a text gives.
"""

from __future__ import annotations

import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import Config, ConfigurationRejected, loads

#: The repository's root, where C{etc/} is.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: A certificate entry that needs no file: it is to be generated.
CERTIFICATE = """
config vpn certificate local
    edit "cert"
        set certificate-file "cert.crt"
        set private-key-file "cert.key"
        set auto-generate enable
    next
end
"""

#: One VIP, its access proxy with one https api-gateway and real server,
#: and a policy: the smallest useful configuration.
MINIMAL = (
    CERTIFICATE
    + """
config firewall vip
    edit "vip"
        set type access-proxy
        set server-type https
        set extip 192.0.2.1
        set extintf "any"
        set extport 443
        set ssl-certificate "cert"
    next
end
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                config realservers
                    edit 1
                        set ip 10.0.0.1
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 1
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set schedule "always"
        set action accept
    next
end
"""
)


def stateDirectory(case: SynchronousTestCase) -> str:
    """
    A fresh directory for a test's C{state-dir}.
    """
    path = case.mktemp()
    os.makedirs(path)
    return path


def joined(*parts: str) -> str:
    """
    Configuration pieces, each dedented, one after the other.
    """
    return "\n".join(textwrap.dedent(part).strip("\n") for part in parts) + "\n"


def load(case: SynchronousTestCase, *parts: str) -> Config:
    """
    Load the configuration made of C{parts} (see L{joined}), with a state
    directory of its own, as C{test.conf}.
    """
    return loads(joined(*parts), source="test.conf", baseDirectory=stateDirectory(case))


def errors(case: SynchronousTestCase, *parts: str) -> list[str]:
    """
    The errors the configuration made of C{parts} is rejected with, as
    C{file:line: message} strings; the test fails if it loads.
    """
    rejected = case.assertRaises(
        ConfigurationRejected,
        loads,
        joined(*parts),
        "test.conf",
        stateDirectory(case),
    )
    return [str(e) for e in rejected.errors]


def lineOf(text: str, fragment: str, occurrence: int = 1) -> int:
    """
    The line number (1-based) of the C{occurrence}th line of C{text} that
    contains C{fragment}.
    """
    for number, line in enumerate(text.splitlines(), 1):
        if fragment in line:
            occurrence -= 1
            if occurrence == 0:
                return number
    raise AssertionError(f"{fragment!r} not in the text")

"""
twistd plugin for the ztnagw gateway daemon.

Kept import-light on purpose: every C{twistd}, C{twist} and C{trial} run that
lists plugins imports this module, so it names the real module lazily.
"""

from twisted.application.service import ServiceMaker

ztnagw = ServiceMaker(
    "ztnagw",
    "ztnagw.tap",
    "Zero-trust access gateway (ZTNA access proxy, TCP forwarding, EMS)",
    "ztnagw",
)

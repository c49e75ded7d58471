# -*- test-case-name: tests.logs -*-
"""
FortiOS-style traffic and event logs.

A FortiGate writes one ZTNA traffic log line per session and an event log
line for each ZTNA event, and administrators, SIEM rules and FortiAnalyzer
reports are built on those lines.  ztnagw writes the same lines (see
C{docs/logs.md}):

  - L{ztnagw.logs.entries}: what is logged (L{TrafficLog}, L{EventLog} and
    the event kinds);
  - L{ztnagw.logs.line}: how a line is stamped and spelled (FortiOS
    C{key=value} or JSON lines), and read back;
  - L{ztnagw.logs.destinations}: where lines go (a file, C{twisted.logger});
  - L{ztnagw.logs.writer}: the L{LogWriter} that ties them together with the
    clock.
"""

from ztnagw.logs.destinations import (
    FileLogDestination,
    LoggerLogDestination,
)
from ztnagw.logs.entries import (
    ACCEPT,
    CLIENT_RST,
    CLOSE,
    DENY,
    DEVICE_ENROLLED,
    DEVICE_OFFLINE,
    DEVICE_ONLINE,
    DEVICE_SESSION_ENDED,
    DNS,
    ENROLLMENT_REFUSED,
    EVENT_KINDS,
    FIREWALL_POLICY,
    HTTP,
    HTTPS,
    IP_CONN,
    MANAGEABLE,
    PROXY_POLICY,
    REAL_SERVER_DOWN,
    REAL_SERVER_UP,
    SERVER_RST,
    TIMEOUT,
    UNMANAGEABLE,
    ZTNA_GATEWAY_MATCH_FAILURE,
    ZTNA_POLICY_DENIED,
    EventKind,
    EventLog,
    TrafficLog,
    tunnelService,
)
from ztnagw.logs.interfaces import ILogDestination, ILogEntry
from ztnagw.logs.line import LogFormat, LogLine, LogTime, parseKeyValue
from ztnagw.logs.writer import LogWriter

__all__ = [
    "ACCEPT",
    "CLIENT_RST",
    "CLOSE",
    "DENY",
    "DEVICE_ENROLLED",
    "DEVICE_OFFLINE",
    "DEVICE_ONLINE",
    "DEVICE_SESSION_ENDED",
    "DNS",
    "ENROLLMENT_REFUSED",
    "EVENT_KINDS",
    "FIREWALL_POLICY",
    "HTTP",
    "HTTPS",
    "IP_CONN",
    "MANAGEABLE",
    "PROXY_POLICY",
    "REAL_SERVER_DOWN",
    "REAL_SERVER_UP",
    "SERVER_RST",
    "TIMEOUT",
    "UNMANAGEABLE",
    "ZTNA_GATEWAY_MATCH_FAILURE",
    "ZTNA_POLICY_DENIED",
    "EventKind",
    "EventLog",
    "FileLogDestination",
    "ILogDestination",
    "ILogEntry",
    "LogFormat",
    "LogLine",
    "LogTime",
    "LogWriter",
    "LoggerLogDestination",
    "TrafficLog",
    "parseKeyValue",
    "tunnelService",
]

"""
The security battery: attack tests against the real daemon on loopback
(C{docs/security.md} is the threat model; its results table is generated
from a run of this package by L{tests.security.report}).

Each attack test asserts three things: the attack is refused with the
right status and ZTNA code, nothing of it reaches a real server (the real
servers record every connection and byte they receive), and the daemon
keeps serving a legitimate device afterwards.
"""

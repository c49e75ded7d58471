"""
The forwarder: ztnagw's client side, in the FortiClient role.

C{ztnagw-forward} (L{ztnagw.forwarder.cli}) enrolls a device with an EMS
(L{ztnagw.forwarder.enroll}), keeps it online with telemetry
(L{ztnagw.forwarder.agent}, facts from L{ztnagw.forwarder.facts}), and
tunnels local TCP connections through a gateway (L{ztnagw.forwarder.forward}).
Everything it knows about the device is in a profile directory
(L{ztnagw.forwarder.profile}).
"""

from ztnagw import __version__

#: The C{User-Agent} of every request the forwarder makes: it names the
#: forwarder, which the gateway's manageable-device rule recognises.
USER_AGENT = f"ztnagw-forward/{__version__}"

# -*- test-case-name: tests.test_demo -*-
"""
C{ztnagw demo}: the walkthrough's topology on this machine's loopback, in
one command, right after installation.

A newcomer should see ztnagw do what the FortiGate walkthrough shows before
reading any documentation: a web server that is only reachable through the
access proxy, a device certificate that opens it, no certificate that gets
the block page with error 002, and a VIP with C{client-cert disable} that
asks for nothing.  The demo builds exactly that in a throwaway directory
and runs the real gateway (the same L{GatewayService} C{twistd ztnagw}
runs, from a configuration file written next to it):

  - a configuration like C{etc/ztnagw.conf}: EMS 1, the VIP C{ZTNA-DEMO}
    (certificates asked for and required), the VIP C{ZTNA-OPEN}
    (C{client-cert disable}), each in front of the internal web server, a
    policy that logs every session to C{traffic.log};
  - the EMS CA and the gateway certificate (made by the gateway's start-up,
    as for any deployment);
  - a device, enrolled the way users enroll theirs: an enrollment token
    (C{ztnagw token create}), then the forwarder's enrollment through the
    EMS listener, checked by the listener's pin (C{ztnagw-forward enroll});
    its profile (key, certificate, EMS CA) is written into the demo's
    directory, and the forwarder's agent runs in the demo to keep the
    device online (C{ztnagw-forward agent});
  - the internal web server: a Twisted web server on 127.0.0.1 whose page
    shows the request it received (so the gateway's C{X-Forwarded-*} fields
    can be seen).

It prints the C{curl} commands for the walkthrough's examples with what
each should show, and runs until Ctrl-C.  A directory it created itself is
removed at the end; a C{--directory} given by the user is left as it is,
and nothing outside it is touched.
"""

from __future__ import annotations

import html
import os
import shutil
import socket
import tempfile
import time
from typing import IO, TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ztnagw.config import load
from ztnagw.ems.tokens import createToken
from ztnagw.forwarder.agent import TelemetryService
from ztnagw.forwarder.enroll import EnrollmentPlan, enroll
from ztnagw.forwarder.facts import collectReport
from ztnagw.forwarder.profile import Profile
from ztnagw.registry import openStore
from ztnagw.startup import PreparedGateway, prepare
from ztnagw.tls.client import parsePin

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.defer import Deferred

__all__ = [
    "DemoPorts",
    "HeadersPage",
    "demoConfiguration",
    "demoToken",
    "enrollDemoDevice",
    "instructions",
    "runDemo",
]

#: The EMS serial number of the demo (the walkthrough's).
DEMO_EMS_SERIAL = "FCTEMS8825007278"


@frozen
class DemoPorts:
    """
    The loopback ports of the demo.

    @ivar vip: the VIP that asks for device certificates (the walkthrough's
        11443 when free).
    @ivar openVip: the VIP with C{client-cert disable}.
    @ivar web: the internal web server.
    @ivar ems: the EMS listener (enrollment and telemetry).
    """

    vip: int
    openVip: int
    web: int
    ems: int


def _portFree(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _anyPort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def choosePorts(preferred: int = 11443) -> DemoPorts:
    """
    Ports for the demo: C{preferred} and the next one for the VIPs when
    they are free (the walkthrough uses 11443), others chosen by the
    kernel.
    """
    if _portFree(preferred) and _portFree(preferred + 1):
        vip, openVip = preferred, preferred + 1
    else:
        vip, openVip = _anyPort(), _anyPort()
    chosen = {vip, openVip}
    others = []
    while len(others) < 2:
        port = _anyPort()
        if port not in chosen:
            chosen.add(port)
            others.append(port)
    return DemoPorts(vip=vip, openVip=openVip, web=others[0], ems=others[1])


def demoConfiguration(ports: DemoPorts) -> str:
    """
    The demo's gateway configuration (FortiOS CLI syntax), its state
    directory C{state} and its log file C{traffic.log} next to it.
    """
    return f"""#config-version=ztnagw
#
# Written by 'ztnagw demo': the FortiGate walkthrough "ZTNA HTTPS access
# proxy with SSL certificate-based authentication" on loopback.
#
#   ZTNA-DEMO  https://127.0.0.1:{ports.vip}/   client-cert enable,
#              empty-cert-action block (the defaults): examples 1 and 2
#   ZTNA-OPEN  https://127.0.0.1:{ports.openVip}/   client-cert disable: example 3
#
# Both lead to the internal web server on 127.0.0.1:{ports.web}.

config system global
    set hostname "ztnagw-demo"
    set state-dir "state"
    set log-file "traffic.log"
end

config system interface
    edit "lo"
        set ip 127.0.0.1 255.0.0.0
        set type loopback
        set role lan
    next
end

config vpn certificate local
    edit "gateway"
        set certificate-file "gateway.crt"
        set private-key-file "gateway.key"
        set auto-generate enable
    next
end

config endpoint-control fctems
    edit 1
        set name "ems"
        set status enable
        set server "127.0.0.1"
        set https-port {ports.ems}
        set serial-number "{DEMO_EMS_SERIAL}"
    next
end

config firewall vip
    edit "ZTNA-DEMO"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {ports.vip}
        set ssl-certificate "gateway"
    next
    edit "ZTNA-OPEN"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "lo"
        set extport {ports.openVip}
        set ssl-certificate "gateway"
        set client-cert disable
    next
end

config firewall access-proxy
    edit "ZTNA-DEMO"
        set vip "ZTNA-DEMO"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {ports.web}
                    next
                end
            next
        end
    next
    edit "ZTNA-OPEN"
        set vip "ZTNA-OPEN"
        config api-gateway
            edit 1
                set service http
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set port {ports.web}
                    next
                end
            next
        end
    next
end

config firewall policy
    edit 1
        set name "Access-Demo-ZTNA"
        set srcintf "lo"
        set dstintf "any"
        set action accept
        set srcaddr "all"
        set dstaddr "ZTNA-DEMO" "ZTNA-OPEN"
        set schedule "always"
        set logtraffic all
    next
end
"""


def demoToken(prepared: PreparedGateway) -> str:
    """
    Make the demo device's enrollment token in EMS 1's registry (one use,
    ten minutes), as C{ztnagw token create} would.  Blocks: call it before
    the gateway opens the registry.

    @return: the token.
    """
    config = prepared.config
    ems = config.emsConnectors[1]
    store = openStore(ems.registry, config.systemGlobal.stateDir, ems.id)
    try:
        with store.transaction() as transaction:
            _, token = createToken(
                transaction.cursor, time.time(), tags=("demo",), uses=1, lifetime=600.0
            )
    finally:
        store.close()
    return token


def enrollDemoDevice(
    reactor: Any, prepared: PreparedGateway, directory: str, ports: DemoPorts, token: str
) -> "Deferred[Profile]":
    """
    Enroll the demo's device through the running EMS listener, with the
    forwarder's own code, checking the listener by its pin; the profile
    (C{device.key}, C{device.crt}, C{ca.crt}, C{profile.json}) goes into
    C{directory}.

    @return: fires with the device's profile.
    """
    plan = EnrollmentPlan(
        emsUrl=f"https://127.0.0.1:{ports.ems}",
        host="127.0.0.1",
        port=ports.ems,
        token=token,
        pin=parsePin(prepared.emsListeners[1].pin),
        caCertificates=(),
        directory=directory,
        existing=None,
        gateway=f"127.0.0.1:{ports.vip}",
    )
    # The report reads small system files: not in the reactor thread.
    reading = deferToThreadPool(reactor, reactor.getThreadPool(), collectReport)
    return reading.addCallback(lambda report: enroll(reactor, plan, report))


class HeadersPage(Resource):
    """
    The internal web server's only page: what request it received, so that
    the gateway's work (C{X-Forwarded-For}, C{X-Forwarded-Proto},
    C{X-Forwarded-Host}, the translated C{Host}) can be seen.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        """
        Answer any method with the request line and header fields, as HTML
        for browsers and plain text for others (curl).
        """
        lines = [
            f"{request.method.decode('latin-1')} {request.uri.decode('latin-1')} "
            f"{request.clientproto.decode('latin-1')}"
        ]
        for name, values in sorted(request.requestHeaders.getAllRawHeaders()):
            for value in values:
                lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
        greeting = "Hello from the internal web server (ztnagw demo): you reached it through the ZTNA access proxy."
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        if "text/html" in accept:
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            body = (
                "<!DOCTYPE html><title>ztnagw demo</title><h1>Internal web server</h1>"
                f"<p>{html.escape(greeting)}</p><p>The request it received:</p><pre>"
                + html.escape("\n".join(lines))
                + "</pre>"
            )
        else:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            body = greeting + "\n\nThe request it received:\n" + "\n".join(lines) + "\n"
        return body.encode("utf-8")


def instructions(directory: str, ports: DemoPorts, uid: str) -> str:
    """
    What the demo prints: the three examples as curl commands and what
    each shows.
    """
    ca = os.path.join(directory, "state", "ems1", "ca.crt")
    certificate = os.path.join(directory, "device.crt")
    key = os.path.join(directory, "device.key")
    base = f"curl --cacert {ca}"
    return f"""\
ztnagw demo is running; press Ctrl-C to stop it.

  directory        {directory}
  configuration    {os.path.join(directory, 'gateway.conf')}
  device           {uid} (certificate {certificate})
  web server       http://127.0.0.1:{ports.web}/ (internal: reach it through the VIPs)
  logs             {os.path.join(directory, 'traffic.log')} (one line per request),
                   {os.path.join(directory, 'gateway.log')}

Example 1: the browser offers the device certificate; the page loads.

  {base} --cert {certificate} --key {key} https://127.0.0.1:{ports.vip}/

  -> "Hello from the internal web server ..." and the request it received,
     with X-Forwarded-For: 127.0.0.1 and X-Forwarded-Proto: https.

Example 2: no certificate (Cancel in the browser's prompt): the block page.

  {base} -i https://127.0.0.1:{ports.vip}/

  -> HTTP/1.1 403 Forbidden, X-ZTNA-Error: 002, "Invalid ZTNA Certificate",
     "Error Code: 002".  Add -H 'Accept: application/json' for JSON.

Example 3: the VIP with client-cert disable asks for no certificate.

  {base} https://127.0.0.1:{ports.openVip}/

  -> the same page, without any certificate.

Then revoke the device and try example 1 again (error 063):

  ztnagw endpoint revoke {uid} --config {os.path.join(directory, 'gateway.conf')}
"""


def runDemo(reactor: Any, directory: str | None, out: IO[str], preferredPort: int = 11443) -> int:
    """
    Build the demo and run it until the reactor stops (Ctrl-C).

    @param reactor: the reactor (not running yet).
    @param directory: where to put everything; C{None} for a new temporary
        directory, removed at the end.
    @param out: where the instructions go.
    @param preferredPort: the first VIP's port when free.
    @return: the exit status.
    """
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from ztnagw.service import GatewayService
    from ztnagw.startup import StartupFailed

    created = directory is None
    if directory is None:
        directory = tempfile.mkdtemp(prefix="ztnagw-demo-")
    else:
        directory = os.path.abspath(directory)
        os.makedirs(directory, exist_ok=True)
        if os.listdir(directory):
            out.write(
                f"ztnagw demo: {directory} is not empty; give an empty or new "
                "directory (the demo never overwrites files)\n"
            )
            return 1
    try:
        ports = choosePorts(preferredPort)
        configPath = os.path.join(directory, "gateway.conf")
        with open(configPath, "x") as f:
            f.write(demoConfiguration(ports))
        logFile = open(os.path.join(directory, "gateway.log"), "a")
        globalLogBeginner.beginLoggingTo([textFileLogObserver(logFile)], redirectStandardIO=False)
        try:
            prepared = prepare(load(configPath))
            token = demoToken(prepared)
            gateway = GatewayService(prepared, reactor, configPath=configPath)
        except StartupFailed as e:
            out.write(f"ztnagw demo: {e}\n")
            return 1
        web = reactor.listenTCP(ports.web, Site(HeadersPage()), interface="127.0.0.1")
        failed: list[BaseException] = []
        agents: list[TelemetryService] = []

        def enrolled(profile: Profile) -> None:
            agent = TelemetryService(reactor, profile)
            agent.startService()
            agents.append(agent)
            announce(profile.uid)

        def announce(uid: str) -> None:
            # The examples work once the gateway's registry index holds the
            # device (it polls the registry): say nothing before, or a
            # quick user gets 066.
            index = gateway.indexes[1]
            if not index.healthy or index.lookup(uid) is None:
                reactor.callLater(0.05, announce, uid)
                return
            out.write(instructions(directory, ports, uid))
            out.flush()

        def notEnrolled(reason: Failure) -> None:
            failed.append(reason.value)
            out.write(f"ztnagw demo: the device could not enroll: {reason.getErrorMessage()}\n")
            reactor.stop()

        def start() -> None:
            try:
                gateway.startService()
            except Exception as e:
                failed.append(e)
                out.write(f"ztnagw demo: the gateway cannot start: {e}\n")
                reactor.stop()
                return
            enrollDemoDevice(reactor, prepared, directory, ports, token).addCallbacks(
                enrolled, notEnrolled
            )

        reactor.callWhenRunning(start)
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: agents[0].stopService() if agents else None
        )
        reactor.addSystemEventTrigger("before", "shutdown", lambda: gateway.stopService() if gateway.running else None)
        reactor.addSystemEventTrigger("before", "shutdown", web.stopListening)
        reactor.run()
        return 1 if failed else 0
    finally:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            out.write(f"The demo's files stay in {directory}.\n")

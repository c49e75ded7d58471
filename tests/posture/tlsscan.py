"""
Run Debian's C{testssl.sh} against a listener and read its JSON findings.

testssl.sh is an independent judge of the TLS a server offers: it speaks
TLS itself from raw sockets (and through its own OpenSSL calls) instead of
trusting the library the server uses, and its verdicts are what
administrators and auditors run.  This module keeps the scan bounded in
time and turns its output into a dictionary of findings by id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

#: testssl.sh's own name for it in Debian (C{/usr/bin/testssl}) and
#: upstream's.
_NAMES = ("testssl", "testssl.sh")

#: What is scanned: protocols, cipher categories, every cipher one by one,
#: forward secrecy, client-initiated renegotiation, TLS compression (CRIME).
SCAN = ("-p", "-s", "-e", "-f", "-R", "-C")

#: Upper bound of one scan, in seconds (measured: 40 s on loopback).
SCAN_TIMEOUT = 240


def scanner() -> str | None:
    """
    The testssl.sh executable, or C{None} when it is not installed.
    """
    for name in _NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


class ScanFailed(Exception):
    """
    testssl.sh did not produce findings.
    """


def startScan(host: str, port: int, directory: str) -> tuple[subprocess.Popen, str]:
    """
    Start a scan of C{host}:C{port}; its JSON findings go to a file in
    C{directory}.

    @return: the process and the JSON file's path.
    """
    path = scanner()
    if path is None:
        raise ScanFailed("testssl.sh is not installed (apt-get install testssl.sh)")
    output = os.path.join(directory, f"testssl-{port}.json")
    command = [
        "timeout", str(SCAN_TIMEOUT), path, "--quiet", "--color", "0", "--warnings", "off",
        "--ip", "one", "--connect-timeout", "10", "--openssl-timeout", "10",
        *SCAN, "--jsonfile", output, f"{host}:{port}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir()
    )
    return process, output


def findings(process: subprocess.Popen, output: str) -> dict[str, list[str]]:
    """
    Wait for a scan and read its findings: each id's finding texts.

    @raise ScanFailed: the scan failed or timed out; its output is in the
        message.
    """
    text, _ = process.communicate(timeout=SCAN_TIMEOUT + 30)
    if process.returncode == 124 or not os.path.exists(output):
        raise ScanFailed(f"testssl.sh failed ({process.returncode}):\n{text.decode('utf-8', 'replace')}")
    with open(output, encoding="utf-8") as f:
        entries = json.load(f)
    result: dict[str, list[str]] = {}
    for entry in entries:
        result.setdefault(entry["id"], []).append(entry["finding"])
    if "scanProblem" in result:
        raise ScanFailed(f"testssl.sh reported a problem: {result['scanProblem']}")
    return result


def offeredCiphers(found: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """
    The ciphers the server accepted, from the C{-e} part of a scan: each
    one's OpenSSL name, key exchange and encryption, as testssl.sh prints
    them (C{x1302 TLS_AES_256_GCM_SHA384 ECDH 253 AESGCM 256 ...}).
    """
    ciphers = []
    for key, texts in found.items():
        if key.startswith("cipher_x") or key.startswith("cipher-tls"):
            for text in texts:
                words = text.split()
                # hexcode, name, key exchange (+ its size when it has one),
                # encryption, bits, RFC name.
                name, keyExchange = words[1], words[2]
                encryption = words[4] if words[3].isdigit() else words[3]
                ciphers.append((name, keyExchange, encryption))
    return ciphers

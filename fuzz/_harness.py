"""
What the atheris harnesses share: the repository on C{sys.path} (the
harnesses reuse the fuzz tests' in-memory assemblies of the gateway, so a
coverage-guided run and the hypothesis suite check the same properties),
and a way to cut one fuzz input into pieces.

The harnesses are run by hand, never by the suite: see the "Fuzzing"
section of docs/security.md.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def cutsAndRest(data: bytes) -> tuple[list[int], bytes]:
    """
    Read up to four cut positions (two bytes each, after a count byte) from
    the start of C{data}, so that the fuzzer also explores how the input is
    split across C{dataReceived} calls.
    """
    if not data:
        return [], b""
    count = data[0] % 5
    cuts = [int.from_bytes(data[1 + 2 * i:3 + 2 * i], "big") for i in range(count)]
    return cuts, data[1 + 2 * count:]

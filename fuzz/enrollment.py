"""
Coverage-guided fuzzing of the EMS enrollment API with atheris: each input
is the body of a C{POST /api/v1/enroll}, sent through the real HTTP layer
to the real API, CA, enroller and SQLite registry (in a temporary state
directory).

    pip install -e '.[fuzz]'
    python fuzz/enrollment.py -dict=fuzz/enrollment.dict -max_total_time=60

Inputs may name the placeholders C{@TOKEN@} and C{@CSR@}, which are
replaced by a valid token and a valid CSR, so that the fuzzer reaches the
signing and the registry transaction.  The run stops at the first answer
with an undocumented status or without a JSON body, a 200 that is not a
recorded enrollment, or a logged failure.
"""

from __future__ import annotations

import json
import sys
import tempfile

import atheris

import _harness  # noqa: F401  (puts the repository on sys.path)

with atheris.instrument_imports(include=["ztnagw"]):
    from tests.fuzz.ems import InMemoryEms, enrollRequest
    from tests.fuzz.test_enrollment import DOCUMENTED

_EMS = InMemoryEms(tempfile.mkdtemp(prefix="ztnagw-fuzz-ems-"))
_CSR = json.dumps(_EMS.csr)[1:-1].encode("ascii")


def testOneInput(data: bytes) -> None:
    """
    Send one enrollment body; raise on any broken property.
    """
    body = data.replace(b"@TOKEN@", _EMS.token.encode("ascii")).replace(b"@CSR@", _CSR)
    answers, failures = _EMS.exchange(enrollRequest(body))
    if failures.events:
        raise AssertionError(failures.describe())
    for status, answer in answers:
        if status not in DOCUMENTED:
            raise AssertionError(f"status {status} {answer} for {body[:300]!r}")
        if status == 200:
            stored = _EMS.store.get(answer["uid"])
            if stored.certSerial != answer["certSerial"]:
                raise AssertionError(f"enrollment not recorded for {body[:300]!r}")


def main() -> None:
    """
    Run the fuzzer with libFuzzer's command line.
    """
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""
Coverage-guided fuzzing of the configuration language, text to checked
model, with atheris.

    pip install -e '.[fuzz]'
    python fuzz/config.py -dict=fuzz/config.dict -max_total_time=60

Each input is a configuration text: it must load (and then survive
C{config show} and back unchanged) or be rejected with
L{ConfigurationRejected} whose errors are located in the text.  Seeds from
etc/ are a good start: C{python fuzz/config.py corpus/ etc/}.
"""

from __future__ import annotations

import sys
import tempfile

import atheris

import _harness  # noqa: F401  (puts the repository on sys.path)

with atheris.instrument_imports(include=["ztnagw"]):
    # loads() imports these lazily: they must be imported (and so
    # instrumented) here.
    import ztnagw.config.build  # noqa: F401
    import ztnagw.config.printer  # noqa: F401
    import ztnagw.config.syntax  # noqa: F401
    from ztnagw.config import loads, show
    from ztnagw.config.tree import ConfigurationRejected

_BASE = tempfile.mkdtemp(prefix="ztnagw-fuzz-config-")


def testOneInput(data: bytes) -> None:
    """
    Load one configuration; raise on any broken property.
    """
    try:
        config = loads(data, "fuzz.conf", baseDirectory=_BASE)
    except ConfigurationRejected as rejected:
        lineCount = data.count(b"\n") + 1
        for error in rejected.errors:
            if error.location is not None and not 1 <= error.location.line <= lineCount:
                raise AssertionError(f"error outside the text: {error}")
        return
    shown = show(config)
    if loads(shown, "shown.conf", baseDirectory=_BASE) != config:
        raise AssertionError(f"config show does not read back equal:\n{shown}")


def main() -> None:
    """
    Run the fuzzer with libFuzzer's command line.
    """
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""
Tests for ztnagw.

Hypothesis runs with a deterministic profile, as in Twisted's own test suite
(C{twisted/trial/test/__init__.py}): CI must never fail on an example found by
chance, and slow machines must not trip deadlines.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ztnagw",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.load_profile("ztnagw")

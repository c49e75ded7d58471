"""
Tests for L{ztnagw.forwarder}.
"""

"""
Tests for L{ztnagw.tls}.
"""

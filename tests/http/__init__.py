"""
Tests for L{ztnagw.http}.
"""

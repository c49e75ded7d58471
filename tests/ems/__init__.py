"""
Tests for L{ztnagw.ems} and the C{ztnagw ems} admin command.
"""

"""
Tests for the ztnagw admin command.
"""

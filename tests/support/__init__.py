"""
Helpers shared by the test suite (throwaway PKI, daemon runners, clients).
"""

"""
Tests for the benchmark harness's pieces (C{benchmarks/}): configuration
generation, result tables, parsers, and the load tools against local
servers for a second.  The full benchmark is not part of the suite.
"""

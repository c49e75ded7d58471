"""
The CI-length soak (L{benchmarks.soak}) and the rules of its report.
"""

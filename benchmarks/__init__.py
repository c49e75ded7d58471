"""
Benchmarks of ztnagw: the side-by-side comparison with nginx, HAProxy and
stunnel (C{python -m benchmarks}, see C{docs/performance.md}), and
micro-benchmarks of single layers (C{benchmarks/http_layer.py}).
"""

"""
Fault tests with the real daemon: real servers that fail in every way, a
failing resolver, a registry locked by another writer, a log file that
cannot be written, and a daemon killed with SIGKILL.  Each test checks the
documented answer (docs/gateway.md, "Failures") and that the daemon keeps
serving everyone else.
"""

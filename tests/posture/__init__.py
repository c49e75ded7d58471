"""
Tests of ztnagw's security posture as an outsider sees it: the TLS offered
by its listeners (judged by an independent scanner), the permissions it
demands of key files, dropping privileges, and the systemd unit.
"""

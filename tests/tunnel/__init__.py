"""
Tests for L{ztnagw.tunnel}: the TFACP wire protocol and the relay shared by
the gateway and the forwarder.
"""

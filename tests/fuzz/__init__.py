"""
Fuzz tests: hypothesis drives the gateway's untrusted-input entry points
(the HTTP front end of a VIP, the tunnel request, the configuration
language, the EMS enrollment API) with hostile input, and each test asserts
that the input is refused cleanly and that nothing is logged as a failure.
"""

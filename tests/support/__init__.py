"""Real loopback servers and service helpers for vendorwatch tests.

Tests talk to real services and never skip; nothing here is a mock.  Each
server is a context manager bound to 127.0.0.1 on an ephemeral port, so
concurrent test runs on one machine do not collide.
"""

"""Test doubles that ship with tether: a fault-injecting upstream HTTP server on loopback."""

from tether.testing.upstream import Blackhole, Fault, FaultyUpstream, refused_base_url

__all__ = ["Blackhole", "Fault", "FaultyUpstream", "refused_base_url"]

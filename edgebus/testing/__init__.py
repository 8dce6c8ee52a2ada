"""Test helpers that ship with the library: real servers on ephemeral loopback ports."""

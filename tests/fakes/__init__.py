"""Test doubles that behave like the real peers: the fake clock."""

"""Test doubles that behave like the real peers: the fake clock, scripted telephony
and queue, an in-flight counting store, the reference store, and the one engine builder."""

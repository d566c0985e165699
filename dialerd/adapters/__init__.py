"""Adapters behind the engine's ports: the simulated call centre and the Redis queue reader."""

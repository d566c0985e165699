"""``dialerd demo``: one campaign on the simulated call centre (``sim``) or through a
real Asterisk (``asterisk``), with what both share in ``common``."""

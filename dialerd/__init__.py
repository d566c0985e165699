"""dialerd: an outbound dialer daemon."""

__version__ = "0.1.0"

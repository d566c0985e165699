"""Operator commands that drive a running daemon through its control API.

``http``: requests, paging, errors and exit codes; ``fields``: resource fields as
options; ``output``: tables, records and JSON lines; ``progress``: the import's
progress bar; ``commands``: the argparse wiring of every command.
"""

from __future__ import annotations

from dialerd.client.commands import add_client_commands
from dialerd.client.http import ApiClient, ClientError, UsageError

__all__ = ["ApiClient", "ClientError", "UsageError", "add_client_commands"]

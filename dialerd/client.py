"""Operator commands that drive a running daemon through its control API.

``dialerd campaign list|show|run|stop``, ``dialerd targets import`` and
``dialerd campaigncall list``: aligned tables for people, ``--json`` for scripts. An
error from the API is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import httpx

DEFAULT_API: Final = "http://127.0.0.1:8080"
TOKEN_ENV: Final = "DIALERD_TOKEN"  # noqa: S105 - a variable name, not a secret
MAX_PAGES: Final = 1000
MEDIA_TYPES: Final = {
    ".csv": "text/csv",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
}

Row = dict[str, Any]
Columns = Sequence[tuple[str, Callable[[Row], Any]]]


class ClientError(Exception):
    """Something the operator must fix or know; the text is the one line printed."""


class ApiClient:
    """A small synchronous client of ``/v1.0`` that turns failures into ``ClientError``."""

    def __init__(self, api: str, token: str) -> None:
        self.api = api.rstrip("/")
        try:
            url = httpx.URL(self.api)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ClientError(f"--api {api[:200]!r} is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ClientError(
                f"--api {api[:200]!r} is not an http:// or https:// URL with a host "
                f"(for example {DEFAULT_API})"
            )
        self.http = httpx.Client(
            base_url=f"{self.api}/v1.0",
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=300.0),
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON answer; ``ClientError`` for API errors and unreachable daemons."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"cannot reach the dialerd API at {self.api}: connection refused "
                "(is the daemon running? see --api)"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the dialerd API at {self.api} did not answer in time") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ClientError(f"request to {self.api} failed: {exc}") from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ClientError(
                    f"{self.api} answered {method} {path} with something that is not JSON: "
                    "is --api the dialerd API?"
                ) from None
        raise ClientError(_error_line(response))

    def pages(self, path: str, params: dict[str, str] | None = None) -> Iterator[Row]:
        """Every item of a list, following ``next_page_token``."""
        query = dict(params or {})
        for _ in range(MAX_PAGES):
            page = self.request("GET", path, params=query)
            yield from page["result"]
            # The page after the last item is empty (its token is "").
            if not page["result"] or not page.get("next_page_token"):
                return
            query["page_token"] = page["next_page_token"]


def _error_line(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['status']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason_phrase}: {response.text[:200]}"


def _table(rows: Sequence[Row], columns: Columns) -> str:
    """Rows as left-aligned columns under a header."""
    cells = [[name for name, _ in columns]]
    cells += [["" if (v := get(row)) is None else str(v) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


CAMPAIGN_COLUMNS: Final[Columns] = (
    ("ID", lambda c: c["id"]),
    ("NAME", lambda c: c["name"]),
    ("TYPE", lambda c: c["type"]),
    ("STATUS", lambda c: c["status"]),
    ("SERVICE_LEVEL", lambda c: c["service_level"]),
    ("OUTDIAL", lambda c: c["outdial_id"]),
    ("CREATED", lambda c: c["tm_create"]),
)
CAMPAIGNCALL_COLUMNS: Final[Columns] = (
    ("ID", lambda c: c["id"]),
    ("STATUS", lambda c: c["status"]),
    ("RESULT", lambda c: c["result"] or "-"),
    ("REASON", lambda c: c.get("reason") or "-"),
    ("DESTINATION", lambda c: c["destination"]["target"]),
    ("SLOT", lambda c: c["destination_index"]),
    ("TRY", lambda c: c["try_count"]),
    ("CREATED", lambda c: c["tm_create"]),
)


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if args.json else text)


def _campaign_list(api: ApiClient, args: argparse.Namespace) -> None:
    campaigns = list(api.pages("/campaigns"))
    _emit(args, campaigns, _table(campaigns, CAMPAIGN_COLUMNS))


def _campaign_show(api: ApiClient, args: argparse.Namespace) -> None:
    while True:
        campaign = api.request("GET", f"/campaigns/{args.id}")
        state = api.request("GET", f"/campaigns/{args.id}/state")
        shown = {**campaign, "dialing_state": state}
        if args.watch and not args.json and sys.stdout.isatty():
            print("\x1b[H\x1b[2J", end="")  # clear the terminal between refreshes
        _emit(args, shown, _campaign_text(campaign, state))
        if not args.watch:
            return
        sys.stdout.flush()
        time.sleep(args.watch)


def _campaign_text(campaign: Row, state: Row) -> str:
    width = max(map(len, campaign))
    lines = [
        f"{key.ljust(width)}  {json.dumps(value) if isinstance(value, list) else value}"
        for key, value in campaign.items()
    ]
    why = state["state"] + (f" ({state['detail']})" if state.get("detail") else "")
    since = f" since {state['since']}" if state.get("since") else ""
    lines.append(f"{'dialing'.ljust(width)}  {why}{since}")
    if state.get("instance"):
        lines.append(f"{'instance'.ljust(width)}  {state['instance']}")
    agents = state.get("available_agents")
    lines.append(
        f"{'calls'.ljust(width)}  {state['dialing']} dialing, {state['talking']} talking"
        + ("" if agents is None else f", {agents} agents available")
    )
    targets = state.get("targets")
    if targets:
        lines.append(
            f"{'targets'.ljust(width)}  {targets['idle_due']} due, "
            f"{targets['idle_waiting']} waiting for a retry, "
            f"{targets['progressing']} being dialed, {targets['done']} done"
        )
    return "\n".join(lines)


def _campaign_status(status: str) -> Callable[[ApiClient, argparse.Namespace], None]:
    def change(api: ApiClient, args: argparse.Namespace) -> None:
        campaign = api.request("PUT", f"/campaigns/{args.id}/status", json={"status": status})
        _emit(
            args, campaign, f"campaign {campaign['id']} ({campaign['name']}): {campaign['status']}"
        )

    return change


def _targets_import(api: ApiClient, args: argparse.Namespace) -> None:
    path = Path(args.file)
    media_type = args.format or MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise ClientError(
            f"{path}: cannot tell the format from the name; use --format "
            "text/csv, application/x-ndjson or application/json"
        )
    try:
        with path.open("rb") as body:
            answer = api.request(
                "POST",
                f"/outdials/{args.outdial}/targets",
                content=body,
                headers={"content-type": media_type},
            )
    except OSError as exc:
        raise ClientError(f"{path}: {exc.strerror}") from None
    count = answer.get("count", 1)
    _emit(args, answer, f"imported {count} target(s) into outdial {args.outdial}")


def _campaigncall_list(api: ApiClient, args: argparse.Namespace) -> None:
    calls = list(api.pages(f"/campaigns/{args.campaign}/campaigncalls"))
    _emit(args, calls, _table(calls, CAMPAIGNCALL_COLUMNS))


def _command(action: Callable[[ApiClient, argparse.Namespace], None]) -> Callable[..., int]:
    """Wrap an action: build the client, print any error as one line, return the exit code."""

    def run(args: argparse.Namespace) -> int:
        token = args.token or os.environ.get(TOKEN_ENV, "")
        if not token:
            print(f"dialerd: no API token: pass --token or set {TOKEN_ENV}", file=sys.stderr)
            return 1
        try:
            api = ApiClient(args.api, token)
        except ClientError as exc:
            print(f"dialerd: {exc}", file=sys.stderr)
            return 1
        try:
            action(api, args)
        except ClientError as exc:
            print(f"dialerd: {exc}", file=sys.stderr)
            return 1
        finally:
            api.close()
        return 0

    return run


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--api", default=DEFAULT_API, help=f"API base URL (default {DEFAULT_API})")
    options.add_argument("--token", help=f"API token (default: ${TOKEN_ENV})")
    options.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return options


def add_client_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``campaign``, ``targets`` and ``campaigncall`` commands to the ``dialerd`` CLI."""
    options = _connection_options()

    campaign = subparsers.add_parser("campaign", help="list, show, run or stop campaigns")
    campaign_commands = campaign.add_subparsers(dest="campaign_command", required=True)
    listing = campaign_commands.add_parser("list", parents=[options], help="list campaigns")
    listing.set_defaults(func=_command(_campaign_list))
    for name, action, text in (
        ("show", _campaign_show, "show one campaign and why it is or is not dialing"),
        ("run", _campaign_status("run"), "start dialing"),
        ("stop", _campaign_status("stop"), "stop dialing"),
    ):
        command = campaign_commands.add_parser(name, parents=[options], help=text)
        command.add_argument("id", help="campaign id")
        if name == "show":
            command.add_argument(
                "--watch",
                type=float,
                nargs="?",
                const=2.0,
                default=0.0,
                metavar="SECONDS",
                help="show again every SECONDS (2 if not given) until interrupted",
            )
        command.set_defaults(func=_command(action))

    targets = subparsers.add_parser("targets", help="add targets to an outdial")
    targets_commands = targets.add_subparsers(dest="targets_command", required=True)
    importing = targets_commands.add_parser(
        "import", parents=[options], help="import a CSV, NDJSON or JSON file (all or nothing)"
    )
    importing.add_argument("--outdial", required=True, help="outdial id")
    importing.add_argument(
        "--format", help="media type, when the file name does not end in .csv/.ndjson/.json"
    )
    importing.add_argument("file", help="the file to import")
    importing.set_defaults(func=_command(_targets_import))

    campaigncall = subparsers.add_parser("campaigncall", help="list a campaign's attempts")
    campaigncall_commands = campaigncall.add_subparsers(dest="campaigncall_command", required=True)
    calls = campaigncall_commands.add_parser("list", parents=[options], help="list attempts")
    calls.add_argument("--campaign", required=True, help="campaign id")
    calls.set_defaults(func=_command(_campaigncall_list))

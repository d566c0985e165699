"""The client commands: ``outplan``, ``outdial``, ``campaign``, ``targets``, ``campaigncall``,
``dnc`` and ``queue`` (read only).

Each resource has ``create``, ``update``, ``delete``, ``show`` and ``list``; fields are
options named after the resource's fields, or ``--from-file``. Errors are one line on
stderr; exit status 0 (done), 1 (the API refused the request or could not be reached)
or 2 (the command line is wrong; nothing was sent).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeAlias
from urllib.parse import quote

import msgspec

from dialerd.client import fields as f
from dialerd.client import output
from dialerd.client.http import (
    EXIT_OK,
    TOKEN_ENV,
    ApiClient,
    ApiError,
    ClientError,
    Row,
    UsageError,
    default_api,
)
from dialerd.client.output import Columns, duration, local_time, reference
from dialerd.client.progress import Progress, chunks

MEDIA_TYPES: Final = {
    ".csv": "text/csv",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
}
EXIT_CODES: Final = (
    "exit status: 0 done; 1 the API refused the request or could not be reached "
    "(the reason is one line on stderr); 2 usage error, nothing was sent"
)

Action = Callable[[ApiClient, argparse.Namespace], None]


@dataclass(frozen=True)
class Resource:
    """A resource the CLI edits: its collection path, option fields and list columns."""

    name: str
    path: str
    fields: Sequence[f.Field]
    columns: Columns
    # Fields the API changes through their own PUT (``/outplans/{id}/dial_info``...):
    # (path suffix, field names); every other field goes to ``PUT {path}/{id}``.
    side_updates: Sequence[tuple[str, frozenset[str]]] = field(default_factory=tuple)


def _tries(row: Row) -> str:
    counts = [row.get(f"max_try_count_{slot}", 0) for slot in range(f.SLOTS)]
    while len(counts) > 1 and not counts[-1]:
        counts.pop()
    return ",".join(map(str, counts))


OUTPLAN: Final = Resource(
    "outplan",
    "/outplans",
    f.OUTPLAN_FIELDS,
    (
        ("ID", lambda r: r["id"]),
        ("NAME", lambda r: r["name"]),
        ("SOURCE", lambda r: output.address(r.get("source"))),
        ("DIAL_TIMEOUT", lambda r: duration(r["dial_timeout"])),
        ("TRY_INTERVAL", lambda r: duration(r["try_interval"])),
        ("MAX_TRIES", _tries),
        ("CREATED", lambda r: local_time(r["tm_create"])),
    ),
    side_updates=(
        (
            "/dial_info",
            frozenset(
                {"source", "dial_timeout", "try_interval"}
                | {f"max_try_count_{slot}" for slot in range(f.SLOTS)}
            ),
        ),
    ),
)
OUTDIAL: Final = Resource(
    "outdial",
    "/outdials",
    f.OUTDIAL_FIELDS,
    (
        ("ID", lambda r: r["id"]),
        ("NAME", lambda r: r["name"]),
        ("CAMPAIGN", lambda r: reference(r["campaign_id"])),
        ("CREATED", lambda r: local_time(r["tm_create"])),
    ),
    side_updates=(("/campaign_id", frozenset({"campaign_id"})), ("/data", frozenset({"data"}))),
)
CAMPAIGN: Final = Resource(
    "campaign",
    "/campaigns",
    f.CAMPAIGN_FIELDS,
    (
        ("ID", lambda c: c["id"]),
        ("NAME", lambda c: c["name"]),
        ("TYPE", lambda c: c["type"]),
        ("STATUS", lambda c: c["status"]),
        ("SERVICE_LEVEL", lambda c: c["service_level"]),
        ("OUTDIAL", lambda c: reference(c["outdial_id"])),
        ("CREATED", lambda c: local_time(c["tm_create"])),
    ),
)
TARGET_COLUMNS: Final[Columns] = (
    ("ID", lambda t: t["id"]),
    ("NAME", lambda t: t["name"]),
    ("STATUS", lambda t: t["status"]),
    ("DESTINATIONS", lambda t: " ".join(
        output.address(t.get(f"destination_{slot}")) for slot in range(f.SLOTS)
        if t.get(f"destination_{slot}")
    ) or "-"),
    ("TRIES", lambda t: ",".join(str(t.get(f"try_count_{slot}", 0)) for slot in range(f.SLOTS))),
    # Why the calling rules hold it back, and until when (behaviour.md §10).
    ("HELD", lambda t: (t.get("hold_reason") or "-") + (
        f" until {local_time(t['tm_next_try'])}" if t.get("tm_next_try") else ""
    )),
    ("CREATED", lambda t: local_time(t["tm_create"])),
)  # fmt: skip
CAMPAIGNCALL_COLUMNS: Final[Columns] = (
    ("ID", lambda c: c["id"]),
    ("STATUS", lambda c: c["status"]),
    ("RESULT", lambda c: c["result"] or "-"),
    ("REASON", lambda c: c.get("reason") or "-"),
    ("DESTINATION", lambda c: c["destination"]["target"]),
    ("SLOT", lambda c: c["destination_index"]),
    ("TRY", lambda c: c["try_count"]),
    ("CREATED", lambda c: local_time(c["tm_create"])),
)


# -- generic resource commands ---------------------------------------------------------


def _print_resource(args: argparse.Namespace, resource: Resource, row: Row) -> None:
    if args.quiet:
        print(row["id"])
    else:
        output.emit(args.json, row, lambda: output.record(row))


def _create(resource: Resource) -> Action:
    def create(api: ApiClient, args: argparse.Namespace) -> None:
        body = f.body(args, resource.fields)
        _print_resource(args, resource, api.request("POST", resource.path, json=body))

    return create


def _update(resource: Resource) -> Action:
    def update(api: ApiClient, args: argparse.Namespace) -> None:
        body = f.body(args, resource.fields)
        if not body:
            raise UsageError(
                f"{resource.name} update: nothing to change: give a field option "
                "or --from-file (see --help)"
            )
        base = f"{resource.path}/{args.id}"
        requests: list[tuple[str, Row]] = []
        rest = dict(body)
        for suffix, names in resource.side_updates:
            part = {key: rest.pop(key) for key in list(rest) if key in names}
            if part:
                requests.append((base + suffix, part))
        if rest or not requests:
            requests.insert(0, (base, rest))
        done: list[str] = []
        row: Row = {}
        for path, part in requests:
            try:
                row = api.request("PUT", path, json=part)
            except ClientError as exc:
                if not done:
                    raise
                # The API changes these fields through separate requests: say what stuck.
                raise ClientError(f"{exc} (already changed: {', '.join(done)})") from None
            done += list(part)
        _print_resource(args, resource, row)

    return update


def _delete(resource: Resource) -> Action:
    def delete(api: ApiClient, args: argparse.Namespace) -> None:
        row = api.request("DELETE", f"{resource.path}/{args.id}")
        if args.quiet:
            print(row["id"])
            return
        output.emit(args.json, row, lambda: f"{resource.name} {row['id']} ({row['name']}): deleted")

    return delete


def _show(resource: Resource) -> Action:
    def show(api: ApiClient, args: argparse.Namespace) -> None:
        row = api.request("GET", f"{resource.path}/{args.id}")
        output.emit(args.json, row, lambda: output.record(row))

    return show


def _list_rows(
    args: argparse.Namespace, rows: Callable[[], list[Row]], columns: Columns
) -> Callable[[], None]:
    def show() -> None:
        items = rows()
        if args.quiet:
            for item in items:
                print(item["id"])
        else:
            output.emit_list(args.json, items, columns)

    return show


def _list(resource: Resource) -> Action:
    def listing(api: ApiClient, args: argparse.Namespace) -> None:
        _list_rows(args, lambda: list(api.pages(resource.path)), resource.columns)()

    return listing


def _repeat(args: argparse.Namespace, show: Callable[[], None]) -> None:
    """Show once, or with ``--watch`` every SECONDS (``--count`` times, else until ^C)."""
    redraw = not args.json and sys.stdout.isatty()
    shown = 0
    while True:
        if args.watch and redraw:
            print("\x1b[H\x1b[2J", end="")  # clear the terminal between refreshes
        elif shown and not args.json:
            print()
        show()
        shown += 1
        if not args.watch or (args.count and shown >= args.count):
            return
        sys.stdout.flush()
        time.sleep(args.watch)


# -- campaigns -------------------------------------------------------------------------


def _campaign_show(api: ApiClient, args: argparse.Namespace) -> None:
    def show() -> None:
        campaign = api.request("GET", f"/campaigns/{args.id}")
        state = api.request("GET", f"/campaigns/{args.id}/state")
        shown = {**campaign, "dialing_state": state}
        output.emit(args.json, shown, lambda: output.record(campaign, _state_lines(state)))

    _repeat(args, show)


def _state_lines(state: Row) -> list[tuple[str, str]]:
    why = state["state"] + (f" ({state['detail']})" if state.get("detail") else "")
    since = f" since {local_time(state['since'])}" if state.get("since") else ""
    lines = [("dialing", why + since)]
    if state.get("instance"):
        lines.append(("instance", state["instance"]))
    agents = state.get("available_agents")
    lines.append(
        (
            "calls",
            f"{state['dialing']} dialing, {state['talking']} talking"
            + ("" if agents is None else f", {agents} agents available"),
        )
    )
    targets = state.get("targets")
    if targets:
        lines.append(
            (
                "targets",
                f"{targets['idle_due']} due, {targets['idle_waiting']} waiting, "
                f"{targets['progressing']} being dialed, {targets['done']} done",
            )
        )
        held = targets.get("held") or {}
        if held:
            ranked = sorted(held.items(), key=lambda item: (-item[1], item[0]))
            lines.append(("held", ", ".join(f"{count} {reason}" for reason, count in ranked)))
    return lines


def _campaign_status(status: str) -> Action:
    def change(api: ApiClient, args: argparse.Namespace) -> None:
        campaign = api.request("PUT", f"/campaigns/{args.id}/status", json={"status": status})
        output.emit(
            args.json,
            campaign,
            lambda: f"campaign {campaign['id']} ({campaign['name']}): {campaign['status']}",
        )

    return change


# -- targets ---------------------------------------------------------------------------


def _targets_import(api: ApiClient, args: argparse.Namespace) -> None:
    answer = _import_file(api, args, f"/outdials/{args.outdial}/targets")
    count = answer.get("count", 1)  # a JSON file is one target
    output.emit(
        args.json, answer, lambda: f"imported {count} target(s) into outdial {args.outdial}"
    )


def _import_file(api: ApiClient, args: argparse.Namespace, url: str) -> Row:
    """POST ``args.file`` to ``url`` as it is read, with a progress bar; the answer."""
    path = Path(args.file)
    media_type = args.format or MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise UsageError(
            f"{path}: cannot tell the format from the name; use --format "
            "text/csv, application/x-ndjson or application/json"
        )
    try:
        source = path.open("rb")
        size = os.fstat(source.fileno()).st_size
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    progress = Progress(sys.stderr, size, path.name, header=media_type == "text/csv")
    answer: Row = {}
    try:
        with source:
            answer = api.request(
                "POST",
                url,
                content=chunks(source, progress),
                headers={"content-type": media_type, "content-length": str(size)},
            )
    except ApiError as exc:
        if exc.details:
            raise ImportRejected(str(exc), path, exc.details) from None
        raise
    finally:
        count = answer.get("count")
        progress.finish(count if isinstance(count, int) else None)
    return answer


class ImportRejected(ClientError):
    """Bad rows: the API's summary line, then ``FILE:LINE: problem`` for each row listed."""

    def __init__(self, line: str, path: Path, details: list[Row]) -> None:
        summary = line.split(": line ", 1)[0]
        rows = [f"{path}:{row.get('line', '?')}: {row.get('problem', row)}" for row in details]
        super().__init__("\n".join([summary, *rows]))


def _targets_list(api: ApiClient, args: argparse.Namespace) -> None:
    path = f"/outdials/{args.outdial}/targets"
    _list_rows(args, lambda: list(api.pages(path)), TARGET_COLUMNS)()


def _targets_delete(api: ApiClient, args: argparse.Namespace) -> None:
    row = api.request("DELETE", f"/outdials/{args.outdial}/targets/{args.id}")
    if args.quiet:
        print(row["id"])
        return
    output.emit(args.json, row, lambda: f"target {row['id']} ({row['name']}): deleted")


# -- do-not-call numbers ---------------------------------------------------------------

DNC_COLUMNS: Final[Columns] = (
    ("NUMBER", lambda n: n["number"]),
    ("DETAIL", lambda n: n["detail"] or "-"),
    ("ADDED", lambda n: local_time(n["tm_create"])),
)


def _emit_numbers(args: argparse.Namespace, rows: list[Row]) -> None:
    """The numbers alone with ``-q``, else the table (or JSON)."""
    if args.quiet:
        for row in rows:
            print(row["number"])
    else:
        output.emit_list(args.json, rows, DNC_COLUMNS)


def _dnc_add(api: ApiClient, args: argparse.Namespace) -> None:
    body = [{"number": number, "detail": args.detail} for number in args.numbers]
    _emit_numbers(args, api.request("POST", "/dnc_numbers", json=body)["result"])


def _dnc_remove(api: ApiClient, args: argparse.Namespace) -> None:
    row = api.request("DELETE", f"/dnc_numbers/{quote(args.number)}")
    output.emit(args.json, row, lambda: f"{row['number']}: off the do-not-call list")


def _dnc_show(api: ApiClient, args: argparse.Namespace) -> None:
    row = api.request("GET", f"/dnc_numbers/{quote(args.number)}")
    output.emit(args.json, row, lambda: output.record(row))


def _dnc_list(api: ApiClient, args: argparse.Namespace) -> None:
    _emit_numbers(args, list(api.pages("/dnc_numbers")))


def _dnc_import(api: ApiClient, args: argparse.Namespace) -> None:
    answer = _import_file(api, args, "/dnc_numbers")
    count = answer.get("count", len(answer.get("result", [])) or 1)
    output.emit(args.json, answer, lambda: f"imported {count} do-not-call number(s)")


def _add_dnc_commands(subparsers: Subparsers) -> None:
    dnc = subparsers.add_parser("dnc", help="add, remove, show, list or import do-not-call numbers")
    commands = dnc.add_subparsers(dest="dnc_command", metavar="ACTION", required=True)
    add = _add(commands, "add", _dnc_add, "add numbers (E.164) to the do-not-call list", quiet=True)
    add.add_argument("numbers", nargs="+", metavar="NUMBER", help="an E.164 number")
    add.add_argument("--detail", default="", help="why (kept with each number)")
    remove = _add(commands, "remove", _dnc_remove, "take a number off the do-not-call list")
    remove.add_argument("number", help="an E.164 number")
    show = _add(commands, "show", _dnc_show, "show a do-not-call number's entry")
    show.add_argument("number", help="an E.164 number")
    _add(commands, "list", _dnc_list, "list do-not-call numbers, newest first", quiet=True)
    importing = _add(
        commands, "import", _dnc_import,
        "import a CSV (columns number, detail) or NDJSON file (all or nothing)",
    )  # fmt: skip
    importing.add_argument(
        "--format", help="media type, when the file name does not end in .csv/.ndjson/.json"
    )
    importing.add_argument("file", help="the file to import")


# -- queues (read only) ----------------------------------------------------------------

AGENT_STATES: Final = ("available", "busy", "wrap_up", "paused", "offline")


def _agents(row: Row, state: str) -> str:
    """An agent count; "?" when the queue adapter cannot tell."""
    count = (row.get("agents") or {}).get(state)
    return "?" if count is None else str(count)


def _agent_column(state: str) -> tuple[str, Callable[[Row], str]]:
    return (state.upper(), lambda q: _agents(q, state))


QUEUE_COLUMNS: Final[Columns] = (
    ("ID", lambda q: q["id"]),
    ("NAME", lambda q: q["name"]),
    *(_agent_column(state) for state in AGENT_STATES),
    ("CAMPAIGNS", lambda q: len(q.get("campaign_ids") or [])),
)


def _queue_list(api: ApiClient, args: argparse.Namespace) -> None:
    _list_rows(args, lambda: list(api.pages("/queues")), QUEUE_COLUMNS)()


def _queue_show(api: ApiClient, args: argparse.Namespace) -> None:
    row = api.request("GET", f"/queues/{quote(args.id, safe='')}")

    def text() -> str:
        fields = {key: value for key, value in row.items() if key not in ("agents",)}
        agents = [(f"agents {state}", _agents(row, state)) for state in AGENT_STATES]
        return output.record(fields, agents)

    output.emit(args.json, row, text)


def _add_queue_commands(subparsers: Subparsers) -> None:
    queue = subparsers.add_parser(
        "queue", help="list or show the registered queues ([[queues]]) and their agents"
    )
    commands = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    _add(commands, "list", _queue_list, "list your queues, their agents and campaigns",
         quiet=True)  # fmt: skip
    show = _add(commands, "show", _queue_show, "show a queue, its agents and campaigns")
    show.add_argument("id", help="queue id")


# -- campaigncalls ---------------------------------------------------------------------


def _campaigncall_list(api: ApiClient, args: argparse.Namespace) -> None:
    path = f"/campaigns/{args.campaign}/campaigncalls" if args.campaign else "/campaigncalls"
    _repeat(args, _list_rows(args, lambda: list(api.pages(path)), CAMPAIGNCALL_COLUMNS))


def _campaigncall_show(api: ApiClient, args: argparse.Namespace) -> None:
    row = api.request("GET", f"/campaigncalls/{args.id}")
    output.emit(args.json, row, lambda: output.record(row))


# -- events ------------------------------------------------------------------------------


def _event_line(event: Row) -> str:
    """One event as a line: when, type, the resource and what it is now."""
    data = event.get("data") or {}
    shown = [str(event.get("time", "")), str(event.get("type", "")), str(data.get("id", ""))]
    for name in ("status", "result", "reason", "hold_reason", "state"):
        value = data.get(name)
        if value:
            shown.append(f"{name}={value}")
    return "  ".join(part for part in shown if part)


def _events(api: ApiClient, args: argparse.Namespace) -> None:
    for event in api.events(args.campaign, args.after or "", args.follow):
        if args.json:
            print(msgspec.json.encode(event).decode(), flush=True)
        else:
            print(_event_line(event), flush=True)


def _add_event_commands(subparsers: Subparsers) -> None:
    events = _add(
        subparsers, "events", _events,
        "print your events (what the webhook gets) from the oldest one kept; "
        "--follow keeps printing new ones",
    )  # fmt: skip
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--campaign", metavar="ID", help="only this campaign's events")
    events.add_argument("--after", metavar="EVENT_ID", help="start after this event id")


# -- wiring ----------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    """The API token: from ``--token-file``, ``$DIALERD_TOKEN`` or (deprecated, as it shows
    in ``ps``) ``--token``."""
    if args.token and args.token_file:
        raise UsageError("give either --token or --token-file, not both")
    if args.token_file:
        return read_token_file(Path(args.token_file))
    if args.token:
        print(
            "dialerd: warning: --token is visible to every user in ps and in shell history;"
            f" set {TOKEN_ENV} or use --token-file instead",
            file=sys.stderr,
        )
        return str(args.token)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"no API token: set {TOKEN_ENV} or pass --token-file")
    return token


def read_token_file(path: Path) -> str:
    """The token in ``path`` (its first line); refused, as ssh refuses a key, when the
    group or others may read or write it."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise UsageError(
                f"--token-file {path}: readable by others (mode {mode:04o}); chmod 600 {path}"
            )
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"--token-file {path}: cannot read: {why}") from None
    if not token:
        raise UsageError(f"--token-file {path}: the file is empty")
    return token.splitlines()[0].strip()


def _command(action: Action) -> Callable[[argparse.Namespace], int]:
    """Wrap an action: build the client, print any error as one line, return the exit code."""

    def run(args: argparse.Namespace) -> int:
        api: ApiClient | None = None
        try:
            token = _token(args)
            api = ApiClient(default_api() if args.api is None else args.api, token)
            action(api, args)
        except ClientError as exc:
            sys.stdout.flush()
            print(f"dialerd: {exc}", file=sys.stderr)
            return exc.exit_code
        finally:
            if api is not None:
                api.close()
        return EXIT_OK

    return run


def _options(*, quiet: bool = False) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--api", help="API base URL (default: $DIALERD_API, else http://127.0.0.1:8080)"
    )
    options.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"read the API token from FILE (mode 0600; default: ${TOKEN_ENV})",
    )
    options.add_argument(
        "--token", help="API token (deprecated: visible in ps; use --token-file or $DIALERD_TOKEN)"
    )
    options.add_argument(
        "--json", action="store_true", help="print JSON: one object, or one line per item"
    )
    if quiet:
        options.add_argument("-q", "--quiet", action="store_true", help="print only the id(s)")
    return options


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch",
        type=_positive_float,
        nargs="?",
        const=2.0,
        default=0.0,
        metavar="SECONDS",
        help="show again every SECONDS (2 if not given) until interrupted",
    )
    parser.add_argument(
        "--count", type=_positive_int, default=0, metavar="N", help="with --watch: stop after N"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add(
    commands: Subparsers, name: str, action: Action, help_text: str, *, quiet: bool = False
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name, parents=[_options(quiet=quiet)], help=help_text, description=help_text,
        epilog=EXIT_CODES,
    )  # fmt: skip
    parser.set_defaults(func=_command(action))
    return parser


def _add_resource(subparsers: Subparsers, resource: Resource, help_text: str) -> Subparsers:
    top = subparsers.add_parser(resource.name, help=help_text, description=help_text)
    commands = top.add_subparsers(dest=f"{resource.name}_command", metavar="ACTION", required=True)
    a = "an" if resource.name[0] in "aeiou" else "a"
    create = _add(commands, "create", _create(resource), f"create {a} {resource.name}", quiet=True)
    f.add_field_options(create, resource.fields)
    update = _add(
        commands, "update", _update(resource),
        f"change the fields given of {a} {resource.name}", quiet=True,
    )  # fmt: skip
    update.add_argument("id", help=f"{resource.name} id")
    f.add_field_options(update, resource.fields)
    delete = _add(commands, "delete", _delete(resource), f"delete {a} {resource.name}", quiet=True)
    delete.add_argument("id", help=f"{resource.name} id")
    if resource is not CAMPAIGN:
        show = _add(commands, "show", _show(resource), f"show {a} {resource.name}")
        show.add_argument("id", help=f"{resource.name} id")
    _add(commands, "list", _list(resource), f"list {resource.name}s, newest first", quiet=True)
    return commands


def add_client_commands(subparsers: Subparsers) -> None:
    """Add the client commands to the ``dialerd`` CLI."""
    _add_resource(subparsers, OUTPLAN, "create, change, delete, show or list outplans")
    _add_resource(subparsers, OUTDIAL, "create, change, delete, show or list outdials")

    campaign = _add_resource(
        subparsers, CAMPAIGN, "create, change, delete, show, list, run or stop campaigns"
    )
    show = _add(campaign, "show", _campaign_show, "show a campaign and why it is or is not dialing")
    show.add_argument("id", help="campaign id")
    _watch_options(show)
    for name, status, text in (("run", "run", "start dialing"), ("stop", "stop", "stop dialing")):
        command = _add(campaign, name, _campaign_status(status), text)
        command.add_argument("id", help="campaign id")

    targets = subparsers.add_parser("targets", help="import, list or delete an outdial's targets")
    targets_commands = targets.add_subparsers(
        dest="targets_command", metavar="ACTION", required=True
    )
    importing = _add(
        targets_commands, "import", _targets_import,
        "import a CSV, NDJSON or JSON file (all or nothing)",
    )  # fmt: skip
    importing.add_argument("--outdial", required=True, metavar="ID", help="outdial id")
    importing.add_argument(
        "--format", help="media type, when the file name does not end in .csv/.ndjson/.json"
    )
    importing.add_argument("file", help="the file to import")
    listing = _add(targets_commands, "list", _targets_list, "list an outdial's targets", quiet=True)
    listing.add_argument("--outdial", required=True, metavar="ID", help="outdial id")
    delete = _add(
        targets_commands, "delete", _targets_delete, "delete a target not being dialed",
        quiet=True,
    )  # fmt: skip
    delete.add_argument("--outdial", required=True, metavar="ID", help="outdial id")
    delete.add_argument("id", help="target id")

    _add_dnc_commands(subparsers)
    _add_queue_commands(subparsers)
    _add_event_commands(subparsers)

    campaigncall = subparsers.add_parser(
        "campaigncall", help="list or show dial attempts (campaigncalls)"
    )
    campaigncall_commands = campaigncall.add_subparsers(
        dest="campaigncall_command", metavar="ACTION", required=True
    )
    calls = _add(
        campaigncall_commands, "list", _campaigncall_list, "list attempts, newest first",
        quiet=True,
    )  # fmt: skip
    calls.add_argument("--campaign", metavar="ID", help="only this campaign's attempts")
    _watch_options(calls)
    call = _add(campaigncall_commands, "show", _campaigncall_show, "show one attempt")
    call.add_argument("id", help="campaigncall id")

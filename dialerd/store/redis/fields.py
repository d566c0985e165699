"""The Redis backend's constants, and what maps the model to its scripts' arguments
and hash fields and back."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from dialerd.core.targets import (
    Held,
    Placement,
    Queue,
    new_attempt,
    place_new,
)
from dialerd.model import (
    Address,
    Campaigncall,
    DncNumber,
    OutdialTarget,
    TargetStatus,
    format_time,
)
from dialerd.store.base import (
    AttemptPlan,
    Fence,
    StoreError,
)
from dialerd.store.documents import (
    encode,
)

# The key layout this code reads and writes (``P:layout``); older layouts are migrated
# by ``open``.
LAYOUT: Final = 3
# How many rounds (a claim script call, and a write of up to 100 decisions) one
# start_attempt makes at most before it answers None ("nothing claimed now"): it goes on
# deciding the ready targets in order until one is dialable, as the SQLite claim does.
MAX_ROUNDS: Final = 10_000
# How many plans of start_attempts one claim script call takes at most.
CLAIMS_PER_CALL: Final = 100
# How many ends of finish_attempts one finish script call takes at most.
FINISHES_PER_CALL: Final = 100
# How many times finish_attempt decides again when the target changed in between.
FINISH_ATTEMPTS: Final = 10
MIGRATE_CHUNK: Final = 1000
# Expired lock fields one prune script call deletes.
PRUNE_CHUNK: Final = 500
# Waiting targets one promote script call moves (promote.lua's STEP).
PROMOTE_STEP: Final = 1000
# How many claims this instance remembers (what the claim left of the target) so that
# finishing them needs no read; an attempt finished elsewhere is simply read.
CLAIMS_KEPT: Final = 10_000
# Targets per script call of create_targets (a few tens of ms of Redis time each); bigger
# batches are staged, then published.
IMPORT_CHUNK: Final = 2000
STAGING_TTL_SECONDS: Final = 24 * 3600
DISCARD_CHUNK: Final = 1000
# How long a failed import (one a stop cut included) may spend removing what it wrote;
# what is left then stays recorded as abandoned and is removed at the next open, for at
# most DISCARD_AT_OPEN_SECONDS (the rest at the open after).
DISCARD_SECONDS: Final = 2
DISCARD_AT_OPEN_SECONDS: Final = 10
DELETE_ATTEMPTS: Final = 5
SCRIPTS: Final = (
    "create",
    "update",
    "delete",
    "page",
    "members",
    "targets",
    "publish",
    "discard",
    "start",
    "promote",
    "place",
    "answer",
    "attempt",
    "finish",
    "migrate",
    "delete_target",
    "lease",
    "release",
    "delivered",
    "dnc",
    "dialing",
    "prune",
    "restore_lease",
    "restore_attempt",
    "restore_ended",
)
CONFLICT_MARK: Final = "DIALERD_CONFLICT "
LEASE_LOST_MARK: Final = "DIALERD_LEASE_LOST "
NOT_RUNNING_MARK: Final = "DIALERD_NOT_RUNNING "
CHANGED_MARK: Final = "DIALERD_CHANGED "
UNAVAILABLE_REPLIES: Final = ("OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS")

# The claim script's four arguments of a decided claim, when there is none.
UNCHOSEN: Final = ("", "", "", "", "", "")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
decode_target = msgspec.json.Decoder(OutdialTarget).decode
decode_dnc = msgspec.json.Decoder(DncNumber).decode


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch: exact in a sorted-set score (a double)."""
    return (moment - _EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=4096)
def micros_of_stamp(stamp: str) -> int:
    """``micros`` of a reference timestamp string (imports often share one)."""
    try:
        moment = datetime(
            int(stamp[0:4]),
            int(stamp[5:7]),
            int(stamp[8:10]),
            int(stamp[11:13]),
            int(stamp[14:16]),
            int(stamp[17:19]),
            int(stamp[20:26]),
            tzinfo=UTC,
        )
    except ValueError as error:
        raise StoreError(
            f"timestamp {stamp!r} is not 'YYYY-MM-DD HH:MM:SS.ffffff' ({error})"
        ) from error
    return micros(moment)


def public_url(url: str) -> str:
    """The Redis URL without its password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def max_counts_arg(max_try_counts: Sequence[int]) -> str:
    """The outplan's ``max_try_count_0..4`` as one script argument."""
    return ",".join(str(int(count)) for count in max_try_counts)


def max_bound(page_token: str) -> str:
    """The lexical upper bound of a listing page: strictly below the token."""
    return f"({page_token}" if page_token else "+"


def from_micros(value: bytes | str | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


PlacementArgs = tuple[str, int, int, int | str, int, str]


def placement_args(placement: Placement, *, deleted: bool = False) -> PlacementArgs:
    """A placement as the scripts store it: the queue letter (which index: 'r' ready,
    'w' waiting, 'p' progressing, 'n' idle with nothing to dial, 'd' done and held by
    the rules, '' none), touched and due (microseconds), until (microseconds or ''),
    slot and held."""
    letter = ""
    if deleted:
        letter = ""
    elif placement.queue == Queue.READY:
        letter = "r"
    elif placement.queue == Queue.WAITING:
        letter = "w"
    elif placement.status == TargetStatus.PROGRESSING:
        letter = "p"
    elif placement.status == TargetStatus.IDLE:
        letter = "n"
    elif placement.status == TargetStatus.DONE and placement.held:
        letter = "d"
    until = "" if placement.until is None else micros(placement.until)
    return (
        letter,
        micros(placement.touched),
        micros(placement.due),
        until,
        placement.slot,
        placement.held.value,
    )


def stored_placement(
    status: TargetStatus,
    queue: Queue,
    fields: Sequence[bytes | None],
    default: datetime,
) -> Placement:
    """A placement from its stored fields (touched, due, until, slot, held)."""
    touched, due, until, slot, held = fields
    moment = from_micros(touched) if touched else default
    return Placement(
        status=status,
        queue=queue,
        touched=moment,
        due=from_micros(due) if due else moment,
        until=from_micros(until) if until else None,
        slot=int(slot) if slot not in (None, b"") else -1,
        held=Held(held.decode()) if held else Held.NONE,
    )


def target_row(target: OutdialTarget) -> tuple[str | int, ...]:
    """What targets.lua needs to store one target and index it: the placement is
    the one ``dialerd.core.targets.place_new`` decides."""
    deleted = target.tm_delete is not None
    listed = "" if deleted else f"{target.tm_create}|{target.id}"
    placement = placement_args(place_new(target), deleted=deleted)
    return (target.id, target.outdial_id, encode(target).decode(), listed, *placement)


def held_target(
    body: bytes | OutdialTarget, queue: bytes | None, due: bytes | None, held: bytes | None
) -> OutdialTarget:
    """A stored target with why the rules hold it (``hold_reason``, and ``tm_next_try``
    while it waits), read from its placement fields; ``body`` is the target itself when
    the caller knows it (it wrote that body)."""
    target = body if isinstance(body, OutdialTarget) else decode_target(body)
    if not held:
        return target
    next_try = format_time(from_micros(due)) if queue == b"w" and due else ""
    return msgspec.structs.replace(target, hold_reason=held.decode(), tm_next_try=next_try)


def settled_target(
    target: OutdialTarget, status: TargetStatus, stamp: str, counts: Sequence[int] | None = None
) -> OutdialTarget:
    """The target once a decision is written (at ``stamp``)."""
    changed = msgspec.structs.replace(target, status=status, tm_update=stamp)
    if counts is not None:
        changed = msgspec.structs.replace(
            changed,
            try_count_0=counts[0],
            try_count_1=counts[1],
            try_count_2=counts[2],
            try_count_3=counts[3],
            try_count_4=counts[4],
        )
    return changed


def settled_body(target: OutdialTarget, status: TargetStatus, stamp: str) -> bytes:
    """The target's body once a decision is written (at ``stamp``)."""
    return encode(settled_target(target, status, stamp))


def glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\^" else char for char in text)


def fence_args(fence: Fence | None) -> tuple[str, str, int | str]:
    """A fence as the three script arguments (campaign, owner, token); '' when unfenced."""
    if fence is None:
        return ("", "", "")
    return (fence.campaign_id, fence.owner, fence.token)


def placeholder_campaigncall(plan: AttemptPlan, now: str) -> Campaigncall:
    """The attempt as far as it is known before the claim; the script fills in the target."""
    return new_attempt(
        plan.campaign,
        plan.outplan,
        campaigncall_id=plan.campaigncall_id,
        reference_id=plan.reference_id,
        activeflow_id=plan.activeflow_id,
        target_id="",
        destination=Address(),
        slot=0,
        try_count=0,
        now=now,
    )

"""A resource sent back whole: the fields of a PUT body that only echo the resource.

A VoIPbin client may GET a resource, change a field and PUT the whole JSON back. A PUT
body may therefore carry every field of the resource's own JSON: a field the endpoint
sets is applied as usual; any other (``id``, ``customer_id``, ``status``, ``tm_*``, an
outplan's dial fields on ``PUT /outplans/{id}``...) is ignored when it equals the stored
value, and is a 400 naming it (and the endpoint that sets it, if any) when it differs.
A field the resource does not have is left in the body: msgspec refuses it as unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import msgspec

from dialerd.api.bodies import CampaignExecute
from dialerd.api.errors import invalid
from dialerd.model import NIL_UUID

ASKABLE_STATUSES = frozenset(status.value for status in CampaignExecute)


@functools.cache
def setters(resource_path: str) -> Mapping[str, str]:
    """Field -> the PUT endpoint that sets it, for the resource at ``resource_path``
    (``/campaigns``); the resource's own ``PUT {path}/{id}`` first."""
    from dialerd.api.routes import ENDPOINTS, PREFIX

    found: dict[str, str] = {}
    for endpoint in ENDPOINTS:
        if (
            endpoint.method == "PUT"
            and endpoint.path.startswith(f"{resource_path}/{{id}}")
            and endpoint.body is not None
        ):
            for name in endpoint.body.__struct_fields__:
                found.setdefault(name, f"PUT {PREFIX}{endpoint.path}")
    return found


def _stored_form(field: str, value: Any) -> Any:
    """A reference id as stored: "" and null are the nil UUID; ids compare lower case."""
    if field == "id" or field.endswith("_id"):
        if value is None or value == "":
            return NIL_UUID
        if isinstance(value, str):
            return value.lower()
    return value


def _equal(stored: msgspec.Struct, field: str, given: Any) -> bool:
    """Whether ``given`` (JSON) is the stored value of ``field``, compared as the
    resource's own type (so an address with its defaults left out still matches)."""
    current = getattr(stored, field)
    if isinstance(current, str) and (field == "id" or field.endswith("_id")):
        return bool(_stored_form(field, given) == current)
    whole = msgspec.to_builtins(stored)
    whole[field] = given
    try:
        converted = msgspec.convert(whole, type=type(stored))
    except msgspec.ValidationError:
        return False
    return bool(getattr(converted, field) == current)


def drop_echoes(
    value: Any,
    body_type: type[msgspec.Struct],
    stored: msgspec.Struct,
    kind: str,
    resource_path: str,
) -> Any:
    """``value`` (a decoded JSON body) without the fields of ``stored`` that the body
    type does not set, once each is checked to equal the stored value; a 400 naming the
    first that differs."""
    if not isinstance(value, dict):
        return value
    own = set(body_type.__struct_fields__)
    kept: dict[str, Any] = {}
    for field, given in value.items():
        if field in own or field not in stored.__struct_fields__:
            kept[field] = given
            continue
        if _equal(stored, field, given):
            continue
        setter = setters(resource_path).get(field)
        where = f"; {setter} changes it" if setter else "; it cannot be changed"
        raise invalid(
            f"{field}: {str(given)[:80]!r} differs from the {kind}'s {field} "
            f"{str(getattr(stored, field))[:80]!r}: this endpoint does not set it "
            f"(sent back unchanged it is ignored){where}"
        )
    # A campaign sent back while ``stopping`` carries a status no client may ask for:
    # unchanged, it asks for nothing.
    if (
        "status" in own
        and kept.get("status") not in ASKABLE_STATUSES
        and "status" in stored.__struct_fields__
        and _equal(stored, "status", kept.get("status"))
    ):
        del kept["status"]
    return kept

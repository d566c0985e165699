"""The number the trunk dials for a destination, as the calling rules see it (issue 26).

Every destination type goes out through the same trunk: the telephony backend puts the
address's ``target`` into the dial string whatever its ``type``. A ``sip`` target
``15557654322`` or ``sip:+1 555 765 4322@carrier`` rings the same phone as the ``tel``
target ``+15557654322``, so the do-not-call list, the lockouts, the daily counts and the
calling hours must see the same number in all of them.

``readings`` gives the E.164 numbers a target may be dialed as: the user part of a URI
(scheme, host and parameters dropped), separators dropped, a leading vertical service
code (``*67``, ``#31#``) dropped; then, with a ``+``, the number itself; without one,
every possible reading: the digits as an international number, and as a number dialed
from the country of the outplan's caller id (national form, or an international prefix
such as ``00`` or ``011``). A target with no such reading (an agent's name, a short
extension) is kept as it is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

import phonenumbers

from dialerd.model import Address, surely_e164

# What people write between digits, and a URI's escaped space.
_SEPARATORS: Final = re.compile(r"[\s\-.()/]|%20")
_SERVICE_CODES: Final = re.compile(r"^(?:\*\d{2}|#\d{2}#|\*\d{2}#)+")
_DIALABLE: Final = re.compile(r"^\+?\d{3,20}$")
# International prefixes that need no region to be read (Europe's and North America's).
_PREFIXES: Final = ("00", "011")


def region_of(source: Address | None) -> str | None:
    """The country whose dialing rules apply to a campaign's calls: the one of its
    outplan's caller id when that is an E.164 number (None otherwise)."""
    if source is None or not source.target.startswith("+"):
        return None
    return _region_of_number(source.target)


@lru_cache(maxsize=4096)
def _region_of_number(number: str) -> str | None:
    """``region_of`` a caller id: read once per number, not at every claim."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    # The country code's main country: a fictional number (+1 555 01xx) has one too.
    region = phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    return region if region and region not in ("001", "ZZ") else None


@lru_cache(maxsize=65536)
def readings(target: str, region: str | None = None) -> tuple[str, ...]:
    """The E.164 numbers the trunk may dial for ``target`` (first: the most direct
    reading), or ``(target,)`` when it reads as no phone number."""
    user = _user_part(target)
    if not _DIALABLE.match(user):
        return (target,)
    found: list[str] = []
    if user.startswith("+"):
        _add(found, user, None)
    else:
        _add(found, "+" + user, None)
        for prefix in _PREFIXES:
            if user.startswith(prefix):
                _add(found, "+" + user[len(prefix) :], None)
        if region:
            _add(found, user, region)
    return tuple(found) or (target,)


def numbers_of(addresses: Iterable[Address | None], region: str | None) -> list[str]:
    """Every reading of every destination that has a target, each once, in order: what
    a store looks up for a claim."""
    found: dict[str, None] = {}
    for address in addresses:
        if address is not None and not address.is_empty:
            found.update(dict.fromkeys(readings(address.target, region)))
    return list(found)


def _user_part(target: str) -> str:
    text = target.strip()
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("sip", "sips", "tel"):
        text = rest
    text = text.split("@", 1)[0].split(";", 1)[0]
    text = _SEPARATORS.sub("", text)
    return _SERVICE_CODES.sub("", text)


def _add(found: list[str], text: str, region: str | None) -> None:
    if region is None and surely_e164(text):
        # The common case, decided from the numbering plan without parsing: the number
        # is possible and formats back as it is (what the parse below would find).
        if text not in found:
            found.append(text)
        return
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return
    if not phonenumbers.is_possible_number(parsed):
        return
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if number not in found:
        found.append(number)


__all__ = ["numbers_of", "readings", "region_of"]

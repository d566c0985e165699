"""Reading JSON text a client sent: one strict reader for bodies, NDJSON lines and CSV cells.

msgspec validates the shapes; this module first makes sure the text is JSON a store can
keep and a client meant, and names the problem when it is not:

- the bytes are UTF-8, and no string holds a lone surrogate (``"\\ud800"``);
- no object has the same key twice (which value would win is a guess);
- no ``NaN`` / ``Infinity``, no number that is out of a double's range or absurdly long;
- nesting at most ``MAX_DEPTH`` levels.

``decode`` then converts the value to the wanted type with msgspec (unknown fields,
wrong types, limits and ``__post_init__`` checks all raise ``JsonProblem`` naming the field).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, TypeVar

import msgspec

T = TypeVar("T")

MAX_DEPTH: Final = 32
# Longest accepted number literal: any int64 or double fits in far fewer characters.
MAX_NUMBER_CHARS: Final = 40
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_PATTERN_ERROR: Final = re.compile(r"Expected `str` matching regex '(.*)'")
# What a string pattern of a body type means, for error messages (filled by its module).
PATTERN_NAMES: Final[dict[str, str]] = {}


class JsonProblem(ValueError):
    """The text is not acceptable JSON, or not the expected shape; the message says why."""


class MalformedJson(JsonProblem):
    """The text is not acceptable JSON at all (as opposed to JSON of the wrong shape)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedJson(f"the key {key[:60]!r} appears twice in one object")
            seen.add(key)
    return value


class _BadNumber:
    """A number literal refused while parsing; reported with its path by ``_check_tree``."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _int(text: str) -> int | _BadNumber:
    if len(text) > MAX_NUMBER_CHARS:
        return _BadNumber(f"a number has {len(text)} digits (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _float(text: str) -> float | _BadNumber:
    if len(text) > MAX_NUMBER_CHARS:
        return _BadNumber(f"a number has {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        return _BadNumber(f"the number {text} is out of range")
    return value


def _constant(text: str) -> Any:
    raise MalformedJson(f"{text} is not a JSON value")


def _child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)[:62]}]"


def _check_tree(value: Any) -> None:
    """Depth, lone surrogates and refused numbers (named by their path, as msgspec names
    a field: ``$.service_level``), without recursion."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, _BadNumber):
            raise MalformedJson(f"{item.problem} - at `{path}`")
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise MalformedJson("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
            continue
        if isinstance(item, dict):
            children: list[tuple[Any, str]] = [(key, path) for key in item]
            children += [(child, _child_path(path, key)) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(child, _child_path(path, index)) for index, child in enumerate(item)]
        else:
            continue
        if depth > MAX_DEPTH:
            raise MalformedJson(f"the JSON is nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1, child_path) for child, child_path in children)


def loads(data: bytes | str) -> Any:
    """The JSON value of ``data``; ``JsonProblem`` naming what is wrong with it."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJson(
                f"the text is not UTF-8: byte {exc.start} "
                f"({raw[exc.start : exc.start + 1]!r}): {exc.reason}"
            ) from None
    else:
        text = data
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise MalformedJson(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    _check_tree(value)
    return value


def decode(data: bytes | str, kind: type[T]) -> T:
    """``data`` read strictly and converted to ``kind``; ``JsonProblem`` naming the field."""
    return convert(loads(data), kind)


def convert(value: Any, kind: type[T]) -> T:
    """A JSON-like value converted to ``kind``; ``JsonProblem`` naming the field."""
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as exc:
        message = _PATTERN_ERROR.sub(
            lambda match: f"Expected {PATTERN_NAMES.get(match[1], 'text matching ' + match[1])}",
            str(exc),
        )
        raise JsonProblem(message) from None

"""Structured logs: one JSON object per line on stdout, or a console format for people.

Every line carries ``timestamp`` (ISO-8601 UTC), ``level``, ``event`` and ``logger``, plus
whatever callers bound with ``structlog.contextvars.bind_contextvars`` (``campaign_id``,
``campaigncall_id``, ``target_id``). Records of the standard library's ``logging`` (Hypercorn,
redis, httpx, asyncio) go through the same pipeline. At INFO and above, phone numbers under
keys such as ``destination`` are masked to their last four digits, and so are numbers in the
free text of a line (a library's message, an ``error``: a URL with ``%2B15551234567`` in
it). Secrets are never logged: keys such as ``token`` are dropped, and tokens in query
strings and passwords in URLs (``redis://:secret@host``) are masked in free text at every
level. httpx and httpcore, which write a line per HTTP request, are quiet below WARNING
unless the level is DEBUG.

Loggers are named ``dialerd.<component>``: ``structlog.get_logger("dialerd.engine")``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

# Keys whose values are phone numbers or addresses holding one: ``destination``,
# ``destination_0``, ``destinations``, ``source``, ``target``, ``number``, ``phone``.
NUMBER_KEY = re.compile(r"(destination|source|target|number|phone)s?(_\d+)?")
# Keys never written, whatever the level.
SECRET_KEYS = frozenset({"token", "authorization", "password"})
# Free text masked as above: the message, and an error's text.
TEXT_KEYS = ("event", "error")
# A phone number in free text: "+" (or its URL encoding "%2B") and 7 to 15 digits, or 7 to
# 15 digits standing alone (not a piece of an id, a decimal or a longer word).
NUMBER_IN_TEXT = re.compile(r"(?:\+|%2[Bb])\d{7,15}(?!\d)|(?<![\w.%+-])\d{7,15}(?![\w-])")
# A secret in a query string (?token=..., &accesskey=...), a password in a URL.
SECRET_IN_QUERY = re.compile(r"(?i)\b(token|accesskey|password|secret)=[^&\s\"']+")
PASSWORD_IN_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")
# Libraries that log one INFO line per HTTP request (with its whole URL).
CHATTY_LOGGERS = ("httpx", "httpcore")
LEADING_KEYS = ("timestamp", "level", "logger", "event")
HANDLER_NAME = "dialerd"
_LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def mask_number(text: str) -> str:
    """Mask everything but the last four digits: ``+15551234567`` becomes ``********4567``.

    Text with four digits or fewer is masked entirely, so nothing short is revealed whole.
    """
    digit_positions = [position for position, char in enumerate(text) if char.isdigit()]
    if len(digit_positions) <= 4:
        return "*" * len(text)
    kept_from = digit_positions[-4]
    return "*" * kept_from + text[kept_from:]


def mask_text(text: str, *, numbers: bool = True) -> str:
    """``text`` with secrets masked (tokens in query strings, passwords in URLs) and, with
    ``numbers``, every phone number in it masked to its last four digits."""
    text = SECRET_IN_QUERY.sub(lambda found: f"{found.group(1)}=***", text)
    text = PASSWORD_IN_URL.sub(lambda found: f"{found.group(1)}***@", text)
    if numbers:
        text = NUMBER_IN_TEXT.sub(lambda found: mask_number(found.group()), text)
    return text


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered.endswith("_token")


def _is_number_key(key: object) -> bool:
    return isinstance(key, str) and NUMBER_KEY.fullmatch(key) is not None


def _masked(value: Any) -> Any:
    """``value`` with every phone number in it masked (strings, addresses, lists of them)."""
    if isinstance(value, str):
        return mask_number(value)
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    if isinstance(value, Mapping):
        return {key: _masked(item) if _is_number_key(key) else item for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def redact(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Drop secrets always; mask phone numbers at INFO and above (DEBUG shows them)."""
    for key in [key for key in event_dict if _is_secret(key)]:
        del event_dict[key]
    masking = method_name != "debug"
    if masking:
        for key in [key for key in event_dict if _is_number_key(key)]:
            event_dict[key] = _masked(event_dict[key])
    for key in TEXT_KEYS:
        value = event_dict.get(key)
        if isinstance(value, str):
            event_dict[key] = mask_text(value, numbers=masking)
    return event_dict


def _shared_processors() -> list[Processor]:
    """What both structlog and stdlib records pass through before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        redact,
        structlog.processors.StackInfoRenderer(),
    ]


def _leading_fields_first(
    _logger: WrappedLogger, _method_name: str, event_dict: EventDict
) -> EventDict:
    """Put ``timestamp``, ``level``, ``logger``, ``event`` first so lines read left to right."""
    leading = {key: event_dict.pop(key) for key in LEADING_KEYS if key in event_dict}
    return {**leading, **event_dict}


def _console_tracebacks() -> structlog.typing.ExceptionRenderer:
    """Tracebacks for people, without local variables (they may hold numbers and tokens):
    rich's, when it is installed, with ``show_locals`` off; else plain ones."""
    if importlib.util.find_spec("rich") is not None:
        return structlog.dev.RichTracebackFormatter(show_locals=False)
    return structlog.dev.plain_traceback


def _render_processors(fmt: LogFormat) -> list[Processor]:
    if fmt == "console" or (fmt == "auto" and sys.stdout.isatty()):
        return [
            structlog.dev.ConsoleRenderer(
                colors=sys.stdout.isatty(), exception_formatter=_console_tracebacks()
            )
        ]
    return [
        # Frames without their local variables: those may hold numbers and tokens.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        _leading_fields_first,
        structlog.processors.JSONRenderer(),
    ]


def configure_logging(level: str, fmt: LogFormat) -> None:
    """Send every log record to stdout at ``level`` in ``fmt``; call again to change either."""
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so a reload that changes the configuration reaches every logger.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_render_processors(fmt),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [old for old in root.handlers if old.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    for name in CHATTY_LOGGERS:
        # NOTSET: they follow the root's level (DEBUG) again.
        logging.getLogger(name).setLevel(logging.NOTSET if level == "debug" else logging.WARNING)

"""What the API document says of a target's extension fields (issue 27 items 11, 14)."""

from __future__ import annotations

from typing import Any

from dialerd.api.openapi import openapi_document


def target_schema() -> dict[str, Any]:
    schemas: dict[str, Any] = openapi_document()["components"]["schemas"]
    return schemas["OutdialTarget"]["properties"]  # type: ignore[no-any-return]


def test_tm_next_try_says_when_it_is_a_re_check_and_not_an_opening() -> None:
    description = target_schema()["tm_next_try"]["description"]
    assert "unknown zone" in description
    assert "14 days" in description
    assert "re-check" in description


def test_skipped_destinations_are_described() -> None:
    field = target_schema()["skipped_destinations"]
    assert "do-not-call" in field["description"]
    assert field["items"]["$ref"].endswith("/SkippedDestination")

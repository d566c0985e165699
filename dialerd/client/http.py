"""The control API from the CLI's side: requests, paging, and errors as one line each."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any, Final

import httpx
import msgspec

DEFAULT_API: Final = "http://127.0.0.1:8080"
API_ENV: Final = "DIALERD_API"
TOKEN_ENV: Final = "DIALERD_TOKEN"  # noqa: S105 - a variable name, not a secret
MAX_PAGES: Final = 100_000

# Exit codes scripts can rely on (documented in the README and in `dialerd --help`).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the API refused the request, or could not be reached
EXIT_USAGE: Final = 2  # the command line is wrong: nothing was sent

Row = dict[str, Any]


class ClientError(Exception):
    """A request that failed or was refused; the text is the one line printed (exit 1)."""

    exit_code = EXIT_FAILED


class UsageError(ClientError):
    """A command line that cannot be sent as it is (exit 2)."""

    exit_code = EXIT_USAGE


class ApiError(ClientError):
    """The API answered with an error; ``details`` are its structured extras."""

    def __init__(self, line: str, details: list[Row]) -> None:
        super().__init__(line)
        self.details = details


def default_api() -> str:
    """``$DIALERD_API``, else the address of ``config/sim.toml``."""
    return os.environ.get(API_ENV) or DEFAULT_API


class ApiClient:
    """A small synchronous client of ``/v1.0`` that turns failures into ``ClientError``."""

    def __init__(self, api: str, token: str) -> None:
        self.api = api.rstrip("/")
        try:
            url = httpx.URL(self.api)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise UsageError(f"--api {api[:200]!r} is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise UsageError(
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
        raise _api_error(response)

    def events(self, campaign_id: str | None, after: str, follow: bool) -> Iterator[Row]:
        """The caller's events from ``GET /events`` (Server-Sent Events), oldest first;
        reconnects with the last id after a dropped connection. Without ``follow`` it
        ends once the stream says it caught up."""
        params = {"campaign_id": campaign_id} if campaign_id else {}
        last = after
        while True:
            headers = {"last-event-id": last} if last else {}
            try:
                with self.http.stream(
                    "GET",
                    "/events",
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=60.0),
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise _api_error(response)
                    for message in _sse_messages(response.iter_lines()):
                        if message.get("comment") == "caught up" and not follow:
                            return
                        if "data" in message:
                            last = message.get("id", last)
                            yield msgspec.json.decode(message["data"])
            except (httpx.TransportError, httpx.TimeoutException):
                if not follow:
                    raise ClientError(f"the event stream of {self.api} was interrupted") from None
                time.sleep(1.0)

    def pages(self, path: str, params: dict[str, str] | None = None) -> Iterator[Row]:
        """Every item of a list, following ``next_page_token`` until an empty page."""
        query = {"page_size": "100", **(params or {})}
        for _ in range(MAX_PAGES):
            page = self.request("GET", path, params=query)
            yield from page["result"]
            if not page["result"] or not page.get("next_page_token"):
                return
            query["page_token"] = page["next_page_token"]


def _sse_messages(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Server-Sent Events messages: their fields (``comment`` for a comment line)."""
    message: dict[str, str] = {}
    for line in lines:
        if not line:
            if message:
                yield message
            message = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not name:
            yield {"comment": value}
            continue
        message[name] = (
            message[name] + "\n" + value if name == "data" and name in message else value
        )
    if message:
        yield message


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        details = error.get("details") or []
        line = f"{response.status_code} {error['status']}: {error['message']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiError(
            f"{response.status_code} {response.reason_phrase}: {response.text[:200]}", []
        )
    return ApiError(line, details if isinstance(details, list) else [])

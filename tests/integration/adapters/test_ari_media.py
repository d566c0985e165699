"""The media server that gives Asterisk the rendered prompts (real TCP, real files)."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.abc
import httpx

from dialerd.adapters.asterisk.media import MediaServer
from dialerd.adapters.tts import EspeakTts
from tests.conftest import free_port


def test_prompts_of_the_cache_and_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "tts"
    (tmp_path / "secret.wav").write_bytes(b"RIFF not a prompt")
    port = free_port()

    async def scenario() -> None:
        prompt = await EspeakTts(cache).render("Hello", "en-US", "")
        server = MediaServer(cache, "127.0.0.1", port)
        async with anyio.create_task_group() as tasks:
            await tasks.start(server.serve)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                got = await client.get(f"/tts/{prompt.name}")
                assert got.status_code == 200
                assert got.content == prompt.read_bytes()
                assert got.headers["content-type"] == "audio/wav"
                assert "max-age" in got.headers["cache-control"]
                head = await client.head(f"/tts/{prompt.name}")
                assert head.status_code == 200
                assert head.headers["content-length"] == str(len(prompt.read_bytes()))
                for path in (
                    "/tts/../secret.wav",
                    "/tts/%2e%2e/secret.wav",
                    f"/tts/{'0' * 64}.wav",  # not rendered
                    f"/{prompt.name}",
                    "/",
                ):
                    assert (await client.get(path)).status_code == 404, path
                refused = await client.post(f"/tts/{prompt.name}")
                assert refused.status_code == 404
            tasks.cancel_scope.cancel()

    anyio.run(scenario)


def test_an_address_in_use_is_logged_and_the_rest_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as taken:
            port = taken.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
            with anyio.fail_after(5):
                # Returns (started, nothing served) instead of taking the backend down.
                await MediaServer(tmp_path, "127.0.0.1", port).serve()

    anyio.run(scenario)

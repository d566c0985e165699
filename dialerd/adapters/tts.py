"""Text to speech for the ``talk`` action: text in, an 8 kHz mono 16-bit WAV file out.

The engine is espeak-ng (a Debian package, offline) by default, or an external command
the operator names (for example piper with a neural voice). A prompt is rendered once per
(engine, language, voice, text) into a cache directory, under the SHA-256 of that key, and
read from there afterwards; sox converts whatever the engine wrote to the 8 kHz mono
signed 16-bit WAV that Asterisk's ``format_wav`` plays without transcoding from a file.

``has_voice(language, gender)`` says whether a ``talk`` in that language can be spoken;
the API refuses a campaign whose ``talk`` has no voice (``compile_actions(has_voice=)``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

import anyio
import structlog

from dialerd import metrics

log = structlog.get_logger("dialerd.tts")

SAMPLE_RATE: Final = 8000
# A prompt longer than this is refused rather than rendered (the API bounds talk text too).
MAX_TEXT: Final = 5000
RENDER_TIMEOUT: Final = 60.0
# "en-US", "pt-BR", "de": what a talk's language may look like.
_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_GENDERS: Final = frozenset({"", "male", "female", "neutral"})


class TtsError(Exception):
    """A prompt could not be rendered; the text says why (engine missing, failed...)."""


class Tts(Protocol):
    """Renders prompts; shared by every call (the cache is per engine and voice)."""

    # Where the rendered prompts are (the media server serves them from there).
    cache_dir: Path

    def has_voice(self, language: str, gender: str) -> bool:
        """Whether a ``talk`` in this language (and gender, "" = any) can be spoken."""

    async def render(self, text: str, language: str, gender: str) -> Path:
        """The prompt as an 8 kHz mono WAV file in the cache; raise ``TtsError``."""


def wav_seconds(path: Path) -> float:
    """The length of a WAV file, in seconds."""
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / float(audio.getframerate())


class _CachedTts:
    """Rendering into the cache, once per key, whatever the engine."""

    engine_id = ""

    def __init__(self, cache_dir: Path, *, sox: str = "sox") -> None:
        self.cache_dir = cache_dir
        self.sox = sox
        self._locks: dict[str, anyio.Lock] = {}
        # Seconds spent rendering and how many came from the cache (metrics read them).
        self.rendered = 0
        self.cache_hits = 0

    def key(self, text: str, language: str, voice: str) -> str:
        data = "\0".join((self.engine_id, language.lower(), voice, text))
        return hashlib.sha256(data.encode()).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.cache_dir / f"{key}.wav"

    def voice_for(self, language: str, gender: str) -> str:
        raise NotImplementedError

    def engine_command(self, voice: str, language: str, gender: str, output: Path) -> list[str]:
        raise NotImplementedError

    async def render(self, text: str, language: str, gender: str) -> Path:
        if not text.strip():
            raise TtsError("talk text is empty")
        if len(text) > MAX_TEXT:
            raise TtsError(f"talk text is longer than {MAX_TEXT} characters")
        if not self.has_voice(language, gender):
            raise TtsError(f"no voice for language {language!r} (gender {gender!r})")
        voice = self.voice_for(language, gender)
        key = self.key(text, language, voice)
        path = self.path_for(key)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            try:
                if path.is_file():
                    self.cache_hits += 1
                    _record(0.0, cached=True)
                    return path
                started = time.perf_counter()
                await self._render_to(path, text, voice, language, gender)
                _record(time.perf_counter() - started, cached=False)
                self.rendered += 1
                return path
            finally:
                self._locks.pop(key, None)

    def has_voice(self, language: str, gender: str) -> bool:
        raise NotImplementedError

    async def _render_to(
        self, path: Path, text: str, voice: str, language: str, gender: str
    ) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        stem = f".{path.stem}.{os.getpid()}"
        raw = self.cache_dir / f"{stem}.raw.wav"
        converted = self.cache_dir / f"{stem}.wav"
        try:
            await _run(self.engine_command(voice, language, gender, raw), text.encode())
            if not raw.is_file() or raw.stat().st_size == 0:
                raise TtsError(f"{self.engine_id} wrote no audio")
            await _run(
                [self.sox, "-G", str(raw), "-r", str(SAMPLE_RATE), "-c", "1",
                 "-e", "signed-integer", "-b", "16", str(converted)],
                b"",
            )  # fmt: skip
            converted.chmod(0o644)
            converted.replace(path)  # atomic: a reader sees the whole file or none
        finally:
            raw.unlink(missing_ok=True)
            converted.unlink(missing_ok=True)


class EspeakTts(_CachedTts):
    """espeak-ng: every language it lists; any gender (female through its ``+f`` variant)."""

    def __init__(self, cache_dir: Path, *, command: str = "espeak-ng", sox: str = "sox") -> None:
        super().__init__(cache_dir, sox=sox)
        self.command = command
        self.engine_id = "espeak-ng"
        self._languages: frozenset[str] | None = None

    def languages(self) -> frozenset[str]:
        """The languages espeak-ng speaks, lower case ("en-us", "en", "de"...)."""
        if self._languages is None:
            try:
                done = subprocess.run(
                    [self.command, "--voices"], capture_output=True, text=True, timeout=10,
                    check=True,
                )  # fmt: skip
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("espeak-ng voices unknown", error=str(exc))
                return frozenset()
            self._languages = frozenset(parse_voice_list(done.stdout))
        return self._languages

    def has_voice(self, language: str, gender: str) -> bool:
        if not _LANGUAGE.match(language) or gender not in _GENDERS:
            return False
        return self._language(language) is not None

    def _language(self, language: str) -> str | None:
        known = self.languages()
        wanted = language.lower()
        if wanted in known:
            return wanted
        primary = wanted.split("-", 1)[0]
        return primary if primary in known else None

    def voice_for(self, language: str, gender: str) -> str:
        voice = self._language(language) or "en"
        return f"{voice}+f3" if gender == "female" else voice

    def engine_command(self, voice: str, language: str, gender: str, output: Path) -> list[str]:
        # The text comes on stdin: never an argument (ps, option injection).
        return [self.command, "-v", voice, "-w", str(output), "--stdin"]


class CommandTts(_CachedTts):
    """An external command: ``{output}``, ``{language}`` and ``{gender}`` in its
    arguments are filled in, the text is written to its stdin, and it writes a WAV
    (any rate) to ``{output}``. It speaks the configured ``languages`` (all when empty)."""

    def __init__(
        self,
        cache_dir: Path,
        command: Sequence[str],
        *,
        languages: Sequence[str] = (),
        sox: str = "sox",
    ) -> None:
        super().__init__(cache_dir, sox=sox)
        if not command or not any("{output}" in part for part in command):
            raise ValueError("the tts command must name its output file with {output}")
        self.command = list(command)
        self.languages = frozenset(language.lower() for language in languages)
        self.engine_id = "command:" + "\0".join(self.command)

    def has_voice(self, language: str, gender: str) -> bool:
        if not _LANGUAGE.match(language) or gender not in _GENDERS:
            return False
        return not self.languages or language.lower() in self.languages

    def voice_for(self, language: str, gender: str) -> str:
        return gender

    def engine_command(self, voice: str, language: str, gender: str, output: Path) -> list[str]:
        values = {"output": str(output), "language": language, "gender": gender}
        return [_fill(part, values) for part in self.command]


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def parse_voice_list(text: str) -> list[str]:
    """Languages of ``espeak-ng --voices`` (columns: Pty Language Age/Gender VoiceName...)."""
    languages = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            languages.append(fields[1].lower())
    return languages


async def _run(command: list[str], stdin: bytes) -> None:
    if not _installed(command[0]):
        raise TtsError(f"{command[0]} is not installed")
    try:
        with anyio.fail_after(RENDER_TIMEOUT):
            async with await anyio.open_process(command, stdout=subprocess.DEVNULL) as process:
                assert process.stdin is not None
                assert process.stderr is not None
                try:
                    await process.stdin.send(stdin)
                    await process.stdin.aclose()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # an engine that does not read the text fails below
                error = b"".join([chunk async for chunk in process.stderr])
                returncode = await process.wait()
    except TimeoutError:
        raise TtsError(f"{command[0]} did not finish within {RENDER_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise TtsError(f"{command[0]}: {exc.strerror or exc}") from None
    if returncode != 0:
        lines = error.decode(errors="replace").strip().splitlines()
        raise TtsError(
            f"{command[0]} failed (exit {returncode}): {lines[-1] if lines else ''}".strip()
        )


def _installed(command: str) -> bool:
    return shutil.which(command) is not None or Path(command).is_file()


def _record(seconds: float, *, cached: bool) -> None:
    """Render time and cache hits, for the metrics."""
    metrics.tts_rendered(seconds, cached)

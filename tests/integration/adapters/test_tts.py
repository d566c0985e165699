"""Text to speech with the real engines (espeak-ng, sox; scripts/test installs them)."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import anyio
import pytest

from dialerd.adapters.tts import CommandTts, EspeakTts, TtsError, wav_seconds


def _format(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as audio:
        return audio.getframerate(), audio.getnchannels(), audio.getsampwidth()


def test_espeak_renders_8k_mono_wav_once_per_text_language_voice(tmp_path: Path) -> None:
    tts = EspeakTts(tmp_path / "cache")

    async def scenario() -> tuple[Path, Path, Path, Path]:
        first = await tts.render("Press 1 for an agent.", "en-US", "")
        again = await tts.render("Press 1 for an agent.", "en-US", "")
        female = await tts.render("Press 1 for an agent.", "en-US", "female")
        other = await tts.render("Press 9 to opt out.", "en-US", "")
        return first, again, female, other

    first, again, female, other = anyio.run(scenario)
    assert first == again
    assert len({first, female, other}) == 3
    assert _format(first) == (8000, 1, 2)
    assert 1.0 < wav_seconds(first) < 5.0
    assert (tts.rendered, tts.cache_hits) == (3, 1)
    # A second process (a restart) finds the prompt in the cache.
    assert anyio.run(EspeakTts(tmp_path / "cache").render, "Press 9 to opt out.", "en-US", "") == (
        other
    )
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        p.name for p in (first, female, other)
    )


def test_espeak_voices_come_from_its_own_list(tmp_path: Path) -> None:
    tts = EspeakTts(tmp_path)
    assert tts.has_voice("en-US", "")
    assert tts.has_voice("de", "female")
    assert tts.has_voice("pt-BR", "male")
    assert not tts.has_voice("xx-YY", "")
    assert not tts.has_voice("en-US", "robot")
    assert not tts.has_voice("en US; rm -rf /", "")
    with pytest.raises(TtsError, match="no voice for language 'xx-YY'"):
        anyio.run(tts.render, "Hello", "xx-YY", "")


def test_a_missing_engine_is_a_clear_error(tmp_path: Path) -> None:
    tts = EspeakTts(tmp_path, command="no-such-espeak")
    tts._languages = frozenset({"en"})
    with pytest.raises(TtsError, match="no-such-espeak is not installed"):
        anyio.run(tts.render, "Hello", "en", "")
    assert list(tmp_path.iterdir()) == []


def test_an_external_command_gets_the_text_on_stdin(tmp_path: Path) -> None:
    # An "engine" that speaks by writing a second of tone per line of text it was given.
    engine = tmp_path / "engine.py"
    engine.write_text(
        "import subprocess, sys\n"
        "text = sys.stdin.read()\n"
        "seconds = len(text.splitlines())\n"
        "subprocess.run(['sox', '-n', '-r', '16000', sys.argv[1], 'synth', str(seconds),"
        " 'sine', '440'], check=True)\n"
    )
    tts = CommandTts(
        tmp_path / "cache", [sys.executable, str(engine), "{output}"], languages=["en-GB"]
    )
    assert tts.has_voice("en-gb", "")
    assert not tts.has_voice("en-US", "")
    path = anyio.run(tts.render, "one\ntwo\nthree", "en-GB", "")
    assert _format(path) == (8000, 1, 2)
    assert wav_seconds(path) == pytest.approx(3.0, abs=0.01)


def test_a_failing_command_says_why_and_caches_nothing(tmp_path: Path) -> None:
    tts = CommandTts(
        tmp_path / "cache", ["sh", "-c", "echo voice not found >&2; exit 3", "{output}"]
    )
    with pytest.raises(TtsError, match=r"exit 3.*voice not found"):
        anyio.run(tts.render, "Hello", "en", "")
    assert not any((tmp_path / "cache").glob("*.wav"))

"""Actions of calls and flows per campaign (labelled by campaign id, dropped with the
campaign's other series by ``forget_campaign``), and text to speech."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from dialerd.core.actions import OPTION_TYPES
from dialerd.metrics.unregistered import counter, histogram

# espeak-ng renders a sentence in tens of milliseconds; a neural engine in seconds.
TTS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CAMPAIGN_ACTIONS = counter(
    "dialerd_campaign_actions",
    "Actions executed for the campaign's calls and flows, by type and outcome (done, "
    "failed, callee_hangup; amd: human, machine, notsure).",
    ["campaign_id", "type", "outcome"],
)
CAMPAIGN_DIGITS_CHOSEN = counter(
    "dialerd_campaign_digits_chosen",
    "Values a branch action matched (a key of its target_ids, or other).",
    ["campaign_id", "digits"],
)
CAMPAIGN_OPT_OUTS = counter(
    "dialerd_campaign_opt_outs",
    "Callees the campaign's dnc_add action put on the do-not-call list.",
    ["campaign_id"],
)
CAMPAIGN_PROMPT_FAILURES = counter(
    "dialerd_campaign_prompt_failures",
    "Prompts (talk, play, beep) of the campaign that could not be played.",
    ["campaign_id"],
)
TTS_RENDER = histogram(
    "dialerd_tts_render_seconds",
    "Seconds to render a talk prompt to audio (cache misses only).",
    buckets=TTS_BUCKETS,
)
TTS_CACHE_HITS = counter("dialerd_tts_cache_hits", "Talk prompts served from the audio cache.")
FAMILIES = (
    CAMPAIGN_ACTIONS,
    CAMPAIGN_DIGITS_CHOSEN,
    CAMPAIGN_OPT_OUTS,
    CAMPAIGN_PROMPT_FAILURES,
    TTS_RENDER,
    TTS_CACHE_HITS,
)
# The campaign's series and their label names, for ``forget_campaign``.
PER_CAMPAIGN: tuple[tuple[MetricWrapperBase, tuple[str, ...]], ...] = (
    (CAMPAIGN_ACTIONS, ("campaign_id", "type", "outcome")),
    (CAMPAIGN_DIGITS_CHOSEN, ("campaign_id", "digits")),
    (CAMPAIGN_OPT_OUTS, ("campaign_id",)),
    (CAMPAIGN_PROMPT_FAILURES, ("campaign_id",)),
)
_ACTION_OUTCOMES = frozenset({"done", "failed", "callee_hangup", "human", "machine", "notsure"})


def action_ran(campaign_id: str, action_type: str, outcome: str) -> None:
    """Count one executed action; ``outcome`` as ``dialerd.core.flow.outcome_label``."""
    if action_type not in OPTION_TYPES:
        raise ValueError(f"unknown action type {action_type!r}")
    if outcome not in _ACTION_OUTCOMES:
        raise ValueError(f"unknown action outcome {outcome!r}")
    CAMPAIGN_ACTIONS.labels(campaign_id=campaign_id, type=action_type, outcome=outcome).inc()


def digits_chosen(campaign_id: str, branch: str) -> None:
    """Count a branch taken (``Execute.chosen`` / ``Finish.chosen`` values)."""
    CAMPAIGN_DIGITS_CHOSEN.labels(campaign_id=campaign_id, digits=branch).inc()


def opt_out(campaign_id: str) -> None:
    CAMPAIGN_OPT_OUTS.labels(campaign_id=campaign_id).inc()


def prompt_failed(campaign_id: str) -> None:
    CAMPAIGN_PROMPT_FAILURES.labels(campaign_id=campaign_id).inc()


def tts_rendered(seconds: float, cached: bool) -> None:
    """A talk prompt's audio: rendered in ``seconds``, or taken from the cache."""
    if cached:
        TTS_CACHE_HITS.inc()
    else:
        TTS_RENDER.observe(seconds)

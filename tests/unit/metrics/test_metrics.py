"""Metrics: names, labels, the engine-facing functions, and a lint-clean exposition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector

from dialerd import __version__, metrics

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
# Label names that could carry a per-call identity or a phone number.
FORBIDDEN_LABELS = {
    "campaigncall_id",
    "target_id",
    "campaign_id",
    "destination",
    "source",
    "number",
    "target",
}


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exposed"
    return value


def exposition() -> str:
    return generate_latest(REGISTRY).decode()


def test_exposition_parses_and_names_every_dialerd_metric() -> None:
    names = {family.name for family in text_string_to_metric_families(exposition())}

    assert {
        "dialerd_build_info",
        "dialerd_campaigns",
        "dialerd_attempts_started",
        "dialerd_attempts_finished",
        "dialerd_attempts_active",
        "dialerd_answered",
        "dialerd_abandoned",
        "dialerd_available_agents",
        "dialerd_pacing_attempts_allowed",
        "dialerd_pacing_attempts_started",
        "dialerd_tick_duration_seconds",
        "dialerd_tick_lag_seconds",
        "dialerd_store_operation_seconds",
        "dialerd_store_up",
        "dialerd_telephony_origination_errors",
        "dialerd_queue_read_errors",
        "dialerd_config_reloads",
        "process_resident_memory_bytes",
        "python_info",
    } <= names


def test_build_info_carries_the_version() -> None:
    assert sample("dialerd_build_info", version=__version__) == 1


def test_no_label_can_hold_an_id_or_a_number() -> None:
    """Only the per-campaign families (``dialerd_campaign_*``: a running campaign's
    series, dropped when its loop ends here) carry an id, the campaign's; no family
    carries a call's, a target's or a number. (A campaign another test of this process
    ran may still be exposed: tests share the process's families.)"""
    for family in text_string_to_metric_families(exposition()):
        allowed = {"campaign_id"} if family.name.startswith("dialerd_campaign_") else set()
        for metric_sample in family.samples:
            assert not (FORBIDDEN_LABELS - allowed) & set(metric_sample.labels), metric_sample


def test_fixed_series_exist_at_zero_before_anything_happens() -> None:
    assert sample("dialerd_attempts_finished_total", result="fail", reason="abandoned") >= 0
    assert sample("dialerd_attempts_finished_total", result="success", reason="normal") >= 0
    assert sample("dialerd_campaigns", status="stopping") >= 0
    assert sample("dialerd_config_reloads_total", result="failure") >= 0


def test_abandoned_attempt_counts_as_finished_and_abandoned() -> None:
    finished = sample("dialerd_attempts_finished_total", result="fail", reason="abandoned")
    abandoned = sample("dialerd_abandoned_total")

    metrics.attempt_finished("fail", "abandoned")
    metrics.attempt_finished("fail", "busy")

    assert sample("dialerd_attempts_finished_total", result="fail", reason="abandoned") == (
        finished + 1
    )
    assert sample("dialerd_abandoned_total") == abandoned + 1


def test_unknown_reason_or_type_is_refused_not_made_a_series() -> None:
    with pytest.raises(ValueError, match="hangup reason 'exploded'"):
        metrics.attempt_finished("fail", "exploded")
    with pytest.raises(ValueError, match="campaign type 'sms'"):
        metrics.attempt_started("sms")


def test_attempt_started_counts_by_campaign_type() -> None:
    before = sample("dialerd_attempts_started_total", campaign_type="flow")
    metrics.attempt_started("flow")
    assert sample("dialerd_attempts_started_total", campaign_type="flow") == before + 1


def test_active_attempts_split_into_dialing_and_progressing() -> None:
    metrics.attempts_active(dialing=2, progressing=1)

    assert sample("dialerd_attempts_active", status="dialing") == 2
    assert sample("dialerd_attempts_active", status="progressing") == 1


def test_campaigns_by_status_sets_each_status() -> None:
    metrics.campaigns_by_status({"run": 2, "stopping": 1, "stop": 7})

    assert sample("dialerd_campaigns", status="run") == 2
    assert sample("dialerd_campaigns", status="stop") == 7


def test_available_agents_of_queues_no_longer_read_disappear() -> None:
    metrics.AVAILABLE_AGENTS.labels(queue_id="queue-a").set(4)
    metrics.AVAILABLE_AGENTS.labels(queue_id="queue-b").set(9)

    metrics.queues_in_use({"queue-b"})

    assert REGISTRY.get_sample_value("dialerd_available_agents", {"queue_id": "queue-a"}) is None
    assert sample("dialerd_available_agents", queue_id="queue-b") == 9


def test_pacing_decision_sums_allowed_and_started() -> None:
    allowed = sample("dialerd_pacing_attempts_allowed_total")
    started = sample("dialerd_pacing_attempts_started_total")

    metrics.pacing_decision(allowed=5, started=3)

    assert sample("dialerd_pacing_attempts_allowed_total") == allowed + 5
    assert sample("dialerd_pacing_attempts_started_total") == started + 3


def test_store_operation_is_timed_even_when_it_fails() -> None:
    labels = {"operation": "finish_attempt", "backend": "test"}
    with metrics.store_operation("finish_attempt", "test"):
        pass
    with pytest.raises(OSError, match="disk"), metrics.store_operation("finish_attempt", "test"):
        raise OSError("disk full")

    assert sample("dialerd_store_operation_seconds_count", **labels) == 2


def test_error_counters_exist_at_zero_once_backends_are_declared() -> None:
    metrics.declare_backends(telephony=["declared-pbx"], queue_adapter="declared-acd")

    assert sample("dialerd_telephony_origination_errors_total", backend="declared-pbx") == 0
    metrics.origination_error("declared-pbx")
    metrics.queue_read_error("declared-acd")
    assert sample("dialerd_telephony_origination_errors_total", backend="declared-pbx") == 1
    assert sample("dialerd_queue_read_errors_total", adapter="declared-acd") == 1


def test_config_reloads_count_success_and_failure() -> None:
    failures = sample("dialerd_config_reloads_total", result="failure")
    metrics.config_reloaded(success=False)
    assert sample("dialerd_config_reloads_total", result="failure") == failures + 1


def test_promtool_finds_nothing_to_lint_in_the_exposition() -> None:
    metrics.attempt_finished("success", "normal")
    metrics.TICK_LAG.observe(0.002)
    metrics.TICK_DURATION.observe(0.03)
    metrics.AVAILABLE_AGENTS.labels(queue_id="queue-lint").set(3)
    metrics.declare_backends(telephony=["sim"], queue_adapter="sim")

    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_actions_count_per_campaign_and_are_forgotten_with_it() -> None:
    campaign = "metrics-test-actions"
    metrics.action_ran(campaign, "talk", "done")
    metrics.action_ran(campaign, "talk", "done")
    metrics.action_ran(campaign, "amd", "machine")
    metrics.digits_chosen(campaign, "9")
    metrics.opt_out(campaign)
    metrics.prompt_failed(campaign)
    try:
        actions = "dialerd_campaign_actions_total"
        assert sample(actions, campaign_id=campaign, type="talk", outcome="done") == 2
        assert sample(actions, campaign_id=campaign, type="amd", outcome="machine") == 1
        assert sample("dialerd_campaign_digits_chosen_total", campaign_id=campaign, digits="9") == 1
        assert sample("dialerd_campaign_opt_outs_total", campaign_id=campaign) == 1
        assert sample("dialerd_campaign_prompt_failures_total", campaign_id=campaign) == 1
    finally:
        metrics.forget_campaign(campaign)
    assert campaign not in exposition()


def test_an_unknown_action_type_or_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action type"):
        metrics.action_ran("c", "ai_talk", "done")
    with pytest.raises(ValueError, match="unknown action outcome"):
        metrics.action_ran("c", "talk", "maybe")


def test_tts_render_time_counts_misses_and_hits_separately() -> None:
    renders = sample("dialerd_tts_render_seconds_count")
    hits = sample("dialerd_tts_cache_hits_total")
    metrics.tts_rendered(0.04, cached=False)
    metrics.tts_rendered(0.0, cached=True)
    assert sample("dialerd_tts_render_seconds_count") == renders + 1
    assert sample("dialerd_tts_cache_hits_total") == hits + 1


def process_samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith("process_")
    }


def test_process_metrics_survive_a_proc_with_only_the_process_visible(tmp_path: Path) -> None:
    # What systemd's ProcSubset=pid leaves of /proc: the process's own directory, no stat.
    (tmp_path / "self").symlink_to(f"/proc/{os.getpid()}")
    hidden, full = CollectorRegistry(), CollectorRegistry()
    metrics.PidOnlyProcessCollector(proc=str(tmp_path), registry=hidden)
    ProcessCollector(registry=full)
    seen, expected = process_samples(hidden), process_samples(full)
    assert set(seen) == set(expected)
    assert "process_start_time_seconds" in seen
    # The same start time (DialerdRestarting counts its changes) to within a second.
    assert abs(seen["process_start_time_seconds"] - expected["process_start_time_seconds"]) < 1
    # prometheus_client's own collector has nothing to say there.
    bare = CollectorRegistry()
    ProcessCollector(proc=str(tmp_path), registry=bare)
    assert process_samples(bare) == {}


IMPORT_ONLY = """
import gc
import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from dialerd import metrics
made = [o for o in gc.get_objects() if isinstance(o, CollectorRegistry)]
assert made == [prometheus_client.REGISTRY], made
assert b"dialerd_" not in generate_latest(prometheus_client.REGISTRY)
metrics.attempt_started("flow")
metrics.opt_out("before-any-registry")
registry = metrics.create_registry()
print(registry.get_sample_value("dialerd_attempts_started_total", {"campaign_type": "flow"}))
print(registry.get_sample_value(
    "dialerd_campaign_opt_outs_total", {"campaign_id": "before-any-registry"}
))
"""


def test_importing_registers_nothing_and_what_is_recorded_before_a_registry_shows() -> None:
    # A fresh interpreter: this test session made registries long ago.
    ran = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["1.0", "1.0"]


def test_every_registry_made_exposes_the_same_families_and_values() -> None:
    other = metrics.create_registry()
    metrics.config_reloaded(success=True)
    labels = {"result": "success"}
    assert other.get_sample_value("dialerd_config_reloads_total", labels) == sample(
        "dialerd_config_reloads_total", **labels
    )
    assert {family.name for family in other.collect()} == {
        family.name for family in REGISTRY.collect()
    }
    assert other.get_sample_value("dialerd_build_info", {"version": __version__}) == 1

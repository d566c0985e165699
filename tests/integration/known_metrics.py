"""Series names dialerd exports, for checks of the alert rules and the Grafana dashboard."""

from __future__ import annotations

import re

from dialerd import metrics

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
# The per-campaign series the engine exports (labelled campaign_id, dropped when the
# campaign's loop ends), and the store-wide campaign counts.
ENGINE_SERIES = frozenset(
    {
        "dialerd_campaign_state",
        "dialerd_campaign_attempts_started_total",
        "dialerd_campaign_attempts_ended_total",
        "dialerd_campaign_answered_total",
        "dialerd_campaign_dialing",
        "dialerd_campaign_talking",
        "dialerd_campaign_service_level",
        "dialerd_campaign_available_agents",
        "dialerd_campaign_targets",
        "dialerd_campaign_targets_held",
        "dialerd_campaign_actions_total",
        "dialerd_campaign_digits_chosen_total",
        "dialerd_campaign_opt_outs_total",
        "dialerd_campaign_prompt_failures_total",
        "dialerd_campaigns_stored",
    }
)
# Prometheus's own, per target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}
# PromQL keywords and functions that look like metric names in an expression.
_NOT_SERIES = frozenset(
    [
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "rate",
        "irate",
        "increase",
        "changes",
        "histogram_quantile",
        "clamp_min",
        "clamp_max",
        "label_replace",
        "abs",
        "topk",
        "bottomk",
        "offset",
        "time",
        "vector",
        "scalar",
        "le",
        "inf",
        "nan",
        "delta",
        "deriv",
        "avg_over_time",
        "max_over_time",
        "min_over_time",
        "sum_over_time",
    ]
)


def known_series() -> frozenset[str]:
    """Every series name dialerd's registry exposes (with the suffixes Prometheus sees),
    the engine's per-campaign series and Prometheus's own."""
    names: set[str] = set(ENGINE_SERIES | SCRAPE_SERIES)
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def series_in(expression: str) -> set[str]:
    """The metric names an expression reads (identifiers not followed by '(' that are not
    keywords, label names or label values)."""
    text = re.sub(r'"[^"]*"', '""', expression)  # label values
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    found = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _NOT_SERIES or re.fullmatch(r"\d.*|e\d+", name):
            continue
        found.add(name)
    return found

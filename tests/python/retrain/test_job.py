"""recserve retrain's decision and arguments (the loop itself: tests/python/service/
test_http_retrain.py)."""

from __future__ import annotations

from typing import Any

import pytest

from recserve.retrain.cli import parse_duration, parse_share
from recserve.retrain.job import RetrainOptions, _decide

HR = {"metric": "hr@10"}


def figures(hr: float | None, auc: float | None = None) -> dict[str, Any]:
    return {"hr@10": hr, "auc": {"complete": auc}}


@pytest.mark.parametrize(
    ("candidate", "incumbent", "options", "decision"),
    [
        (figures(0.30), figures(0.25), HR, "activated"),
        (figures(0.30), figures(None), HR, "activated"),  # nothing to compare: the new one
        (figures(0.26), figures(0.25), HR | {"margin": 0.02}, "trial"),
        (figures(0.24), figures(0.25), HR, "trial"),  # behind, within max_loss
        (figures(0.20), figures(0.25), HR, "kept"),  # behind by more than max_loss
        (figures(0.24), figures(0.25), HR | {"trial_share": 0.0}, "kept"),
        (figures(None), figures(0.25), HR, "kept"),
        (figures(0.1, 0.71), figures(0.5, 0.70), {}, "activated"),  # auc:complete by default
        (figures(0.1, 0.71), figures(0.5, 0.70), {"metric": "auc:complete"}, "activated"),
    ],
)
def test_the_candidate_is_activated_tried_or_kept(
    candidate: dict[str, Any], incumbent: dict[str, Any], options: dict[str, Any], decision: str
) -> None:
    assert _decide(candidate, incumbent, RetrainOptions(**options))[0] == decision


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"holdout": 0.0}, "holdout"),
        ({"holdout": 0.6}, "holdout"),
        ({"metric": "ndcg"}, "metric"),
        ({"trial_share": 0.7}, "trial share"),
        ({"version": "../x"}, "not a model version"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrainOptions(**options)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30m", 1800), ("1h", 3600)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "0", "1w"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "share"), [("10%", 0.1), ("0.25", 0.25)])
def test_shares_parse(text: str, share: float) -> None:
    assert parse_share(text) == pytest.approx(share)

"""The capture policy: strict validation, each mode's decision, the seeded fraction draw, and the
request metadata (time normalised to UTC)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from winnow.errors import InvalidInputError
from winnow.services.deploy import (
    DEFAULT_POLICY,
    capture_metadata,
    capture_name,
    fraction_draw,
    normalize_time,
    validate_policy,
    wants_capture,
)

SHA = hashlib.sha256(b"x").hexdigest()


def test_a_policy_is_completed_with_defaults_and_checked_strictly():
    assert validate_policy({}) == DEFAULT_POLICY
    p = validate_policy({"mode": "rare_class", "rare_classes": ["cat", "cat", "dog"]}, ["cat", "dog", "eel"])
    assert p["rare_classes"] == ["cat", "dog"] and p["mode"] == "rare_class"
    bad = [
        {"mode": "sometimes"}, {"fraction": 0}, {"fraction": 1.5}, {"fraction": "0.5"}, {"fraction": float("nan")},
        {"threshold": -0.1}, {"threshold": True}, {"rare_classes": []}, {"rare_classes": "cat"}, {"rare_classes": [1]},
        {"max_per_day": -1}, {"max_per_day": 2.5}, {"seed": "1"}, {"unknown": 1},
    ]
    for doc in bad:
        with pytest.raises(InvalidInputError, match="capture policy"):
            validate_policy(doc, ["cat"])
    with pytest.raises(InvalidInputError, match="not a class"):
        validate_policy({"rare_classes": ["unicorn"]}, ["cat"])
    with pytest.raises(InvalidInputError):
        validate_policy(["mode", "all"])  # type: ignore[arg-type]


def _p(**kw):
    return validate_policy(kw)


def test_each_mode_decides_and_the_client_flag_wins_except_when_off():
    preds = [{"label": "cat", "score": 0.4}, {"label": "dog", "score": 0.2}]
    assert not wants_capture(_p(mode="off"), preds, sha256=SHA, client=True)
    assert wants_capture(_p(mode="all"), preds, sha256=SHA) and not wants_capture(_p(mode="all"), preds, sha256=SHA, client=False)
    assert not wants_capture(_p(mode="client"), preds, sha256=SHA) and wants_capture(_p(mode="client"), preds, sha256=SHA, client=True)
    assert wants_capture(_p(mode="low_confidence", threshold=0.5), preds, sha256=SHA)
    assert not wants_capture(_p(mode="low_confidence", threshold=0.4), preds, sha256=SHA), "top score 0.4 is not below 0.4"
    assert wants_capture(_p(mode="low_confidence", threshold=0.4), preds, sha256=SHA, top_score=0.39)
    assert wants_capture(_p(mode="low_confidence", threshold=0.1), [], sha256=SHA), "no prediction at all: low confidence"
    assert wants_capture(_p(mode="rare_class"), preds, sha256=SHA, rare=["dog"])
    assert not wants_capture(_p(mode="rare_class"), preds, sha256=SHA, rare=["eel"])
    assert wants_capture(_p(mode="fraction", fraction=1.0), preds, sha256=SHA)


def test_the_fraction_draw_is_deterministic_and_keeps_the_expected_share():
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    draws = [fraction_draw(s, 3) for s in shas]
    assert draws == [fraction_draw(s, 3) for s in shas] and all(0 <= d < 1 for d in draws)
    kept = sum(d < 0.1 for d in draws)
    assert abs(kept - 400) < 4 * (4000 * 0.1 * 0.9) ** 0.5, kept
    assert [fraction_draw(s, 4) for s in shas[:50]] != draws[:50], "the seed changes which images are kept"
    policy = _p(mode="fraction", fraction=0.1, seed=3)
    assert [wants_capture(policy, [], sha256=s) for s in shas] == [d < 0.1 for d in draws]


def test_request_metadata_is_checked_and_time_normalised_to_utc():
    assert normalize_time("2024-05-01T14:03:00+02:00") == "2024-05-01T12:03:00Z"
    assert normalize_time("2024-05-01T12:03:00.250Z") == "2024-05-01T12:03:00.250Z"
    assert normalize_time(" 2024-12-31T23:30:00-01:00 ") == "2025-01-01T00:30:00Z"
    for bad in ("yesterday", "2024-05-01T12:03:00", "2024-13-01T00:00:00Z", "", 1714561380):
        with pytest.raises(InvalidInputError):
            normalize_time(bad)
    assert capture_metadata("cam 1", None, "2024-05-01T12:03:00Z") == {"camera": "cam 1", "time": "2024-05-01T12:03:00Z"}
    for kw in ({"camera": ""}, {"site": "x" * 201}, {"camera": "a\x00b"}, {"site": 5}):
        with pytest.raises(InvalidInputError):
            capture_metadata(**kw)


def test_a_captured_image_is_named_by_its_content_and_day():
    day = datetime(2024, 5, 1, 23, 59, tzinfo=UTC)
    assert capture_name(SHA, "jpeg", day) == f"captured/2024-05-01/{SHA[:16]}.jpg"
    assert capture_name(SHA, "png", day) == f"captured/2024-05-01/{SHA[:16]}.png"

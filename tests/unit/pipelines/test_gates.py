"""The gate language: what parses, what it evaluates to, and what is refused (no code runs)."""

from __future__ import annotations

import re

import pytest

from winnow.pipelines.gates import GateEnv, GateSyntaxError, evaluate_gate, parse_gate

ENV = GateEnv(
    {"map50": 0.62, "map": 0.31, "images": 120, "errors": 0, "undefined": None},
    {
        "count": lambda check: {"split_leakage": 0, "near_duplicate": 3}[check],
        "rate": lambda check: {"label_error": 0.004, "box_out_of_bounds": 0.05}[check],
        "min_slice": lambda metric: 0.38,
    },
)


def verdict(text: str) -> bool:
    return evaluate_gate(parse_gate(text), ENV).passed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("count(split_leakage) == 0", True),
        ("count(near_duplicate) == 0", False),
        ("rate(label_error) <= 1%", True),
        ("rate(label_error) <= 0.01", True),
        ("rate(box_out_of_bounds) ≤ 1%", False),
        ("map50 >= 0.6", True),
        ("map50 >= 0.6 and min_slice(map50) >= 0.4", False),
        ("map50 >= 0.6 and min_slice(map50) >= 0.35", True),
        ("map50 >= 0.9 or map >= 0.3", True),
        ("not (map50 < 0.5)", True),
        ("0.5 <= map50 < 0.7", True),
        ("0.5 <= map50 < 0.6", False),
        ("images - errors * 2 >= 100 + 20", True),
        ("images / 2 == 60", True),
        ("-map50 < 0", True),
        ("map50 != 0.62", False),
        ("map50 ≠ 0.5", True),
        ("count('split_leakage') == 0", True),
        ("true", True),
        ("false or images > 1e2", True),
    ],
)
def test_gates_evaluate_as_written(text, expected):
    assert verdict(text) is expected


def test_an_undefined_value_fails_the_comparison_and_is_reported():
    result = evaluate_gate(parse_gate("undefined >= 0"), ENV)
    assert not result.passed and result.values == {"undefined": None} and result.actual == "undefined = undefined"
    assert not verdict("images / errors > 1")  # division by zero: undefined, not a crash


def test_the_result_reports_every_value_read():
    result = evaluate_gate(parse_gate("map50 >= 0.6 and min_slice(map50) >= 0.4"), ENV)
    assert result.values == {"map50": 0.62, "min_slice(map50)": 0.38}
    assert result.actual == "map50 = 0.62, min_slice(map50) = 0.38"
    assert result.as_dict()["gate"] == "map50 >= 0.6 and min_slice(map50) >= 0.4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "may not start with '_'"),
        ("__import__('os').system('true') == 0", "unexpected character '.'"),
        ("count(__class__) == 0", "may not start with '_'"),
        ("map50.__class__ == 1", "unexpected character '.'"),
        ("images[0] > 1", "unexpected character '['"),
        ("lambda: 1", "unexpected character ':'"),
        ("map50 = 0.6", "use =="),
        ("map50", "is a number, not a condition"),
        ("map50 and images > 1", "'and' needs comparisons"),
        ("(map50 > 1) + 1 > 0", "arithmetic needs numbers"),
        ("map50 >=", "expected a number, a name or '('"),
        ("map50 >= 0.6)", "expected an operator"),
        ("count(a b) == 0", "expected ',' or ')'"),
        ("count(1) == 0", "argument must be a name or a quoted text"),
        ("'x' == 1", "quoted text can only be a function's argument"),
        ("", "non-empty"),
        ("x > 1" + " and x > 1" * 60, "at most 500"),
    ],
)
def test_bad_gates_are_refused_with_a_reason(text, message):
    with pytest.raises(GateSyntaxError, match=re.escape(message)):
        parse_gate(text)


def test_unknown_names_and_functions_are_refused_at_evaluation():
    with pytest.raises(GateSyntaxError, match="unknown name 'mAP50'.*map50"):
        evaluate_gate(parse_gate("mAP50 >= 0.6"), ENV)
    with pytest.raises(GateSyntaxError, match="unknown function 'open'.*count"):
        evaluate_gate(parse_gate("open('/etc/passwd') == 0"), ENV)
    with pytest.raises(GateSyntaxError, match="unknown function 'eval'"):
        evaluate_gate(parse_gate("eval('1') == 1"), ENV)


def test_names_and_calls_are_listed_for_load_time_checks():
    gate = parse_gate("map50 >= 0.6 and min_slice(map50) >= 0.4 or count(split_leakage) == 0")
    assert gate.names == ["map50"]
    assert gate.calls == [("count", ("split_leakage",)), ("min_slice", ("map50",))]

import pytest

from tests.quality_helpers import Item, build_view, textured
from winnow.core.types import Annotation
from winnow.errors import InvalidInputError
from winnow.quality.base import Check, Finding, Suggestion, all_checks, impact
from winnow.quality.engine import parse_params, run_checks


def test_parse_params_reads_json_values_and_rejects_bad_keys():
    assert parse_params(["near_duplicate.max_distance=8", "x.flag=true", "x.name=cat"]) == {
        "near_duplicate": {"max_distance": 8},
        "x": {"flag": True, "name": "cat"},
    }
    with pytest.raises(InvalidInputError):
        parse_params(["max_distance=8"])


def test_check_without_id_is_refused_and_bad_suggestions_too():
    with pytest.raises(TypeError):

        class NoId(Check):
            family = "x"
            description = "y"

            def run(self, view, **params):
                return []

    with pytest.raises(ValueError):
        Suggestion("burn_it", "no")


def test_impact_orders_errors_over_warnings_and_wide_over_narrow():
    one_error = Finding("a", "error", "m", images=["x"])
    one_warning = Finding("a", "warning", "m", images=["x"])
    wide_warning = Finding("a", "warning", "m", images=[str(i) for i in range(300)])
    assert impact(one_error, 1000) > impact(one_warning, 1000)
    assert impact(wide_warning, 1000) > impact(one_error, 1000)


def test_run_checks_validates_selection_and_params(tmp_path):
    view = build_view(tmp_path, [Item("a.png", textured(1), [Annotation("cat", bbox=(1, 1, 20, 20))])])
    with pytest.raises(InvalidInputError, match="unknown check"):
        run_checks(view.store, "p", only=["nope"], view=view)
    with pytest.raises(InvalidInputError, match="has no parameter"):
        run_checks(view.store, "p", only=["degenerate_box"], params={"degenerate_box": {"zzz": 1}}, view=view)
    report = run_checks(view.store, "p", only=["degenerate_box"], view=view)
    assert report.summary["checks_run"] == ["degenerate_box"]
    assert report.summary["images"] == 1 and report.summary["annotations"] == 1
    assert set(report.as_dict()) == {"summary", "findings"}


def test_every_registered_check_has_unique_id_and_description():
    checks = all_checks()
    assert len(checks) == len({c.id for c in checks.values()})
    assert all(c.description.endswith(".") for c in checks.values())

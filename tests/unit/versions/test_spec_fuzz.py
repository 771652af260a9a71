"""Any text given as a split, preprocess or augment spec, or as a version reference, is either
accepted or refused with InvalidInputError: never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from winnow.errors import InvalidInputError
from winnow.services.versions import parse_ref
from winnow.versions.splits import parse_ratios
from winnow.versions.spec import parse_augment, parse_preprocess

TOKENS = st.sampled_from(
    ["resize", "=", "640x640", ":fit", ":", "x", ",", "+", ">", "tile", "2x2", "rotate", "15", "-3", "1e999", "nan",
     "outputs", "flip", "h", "mosaic", "0.5", "remap", "a>b", "drop", "cat", "\x00", "é", " ", "train", "valid", "0.7",
     "/", "%", "inf", "9" * 30, "filter-null", "grayscale", "crop", "noise", "cutout", "hue"]
)
SPECS = st.one_of(st.text(max_size=40), st.lists(TOKENS, max_size=12).map("".join))


def _accepts_or_refuses(parse, spec):
    try:
        return parse(spec)
    except InvalidInputError as exc:
        assert str(exc), "a refusal says why"
        return None


@settings(max_examples=400, deadline=None)
@given(SPECS)
def test_preprocess_specs_never_crash(spec):
    steps = _accepts_or_refuses(parse_preprocess, spec)
    if steps is not None:
        assert all(isinstance(s, dict) and "op" in s for s in steps)
        assert parse_preprocess(spec) == steps, "parsing is a pure function"


@settings(max_examples=400, deadline=None)
@given(SPECS)
def test_augment_specs_never_crash(spec):
    aug = _accepts_or_refuses(parse_augment, spec)
    if aug is not None:
        assert 0 <= aug["outputs"] <= 50 and isinstance(aug["ops"], list)


@settings(max_examples=400, deadline=None)
@given(SPECS)
def test_split_specs_never_crash(spec):
    ratios = _accepts_or_refuses(parse_ratios, spec)
    if ratios is not None:
        assert abs(sum(ratios.values()) - 1) < 1e-9 and all(v >= 0 for v in ratios.values())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_version_references_never_crash(ref):
    parsed = _accepts_or_refuses(parse_ref, ref)
    if parsed is not None:
        project, version = parsed
        assert project and (version is None or version)

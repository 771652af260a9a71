"""The ``version`` step: an immutable dataset version of the project as it is."""

from __future__ import annotations

from typing import Any

from winnow.errors import InvalidInputError
from winnow.pipelines.gates import GateEnv
from winnow.pipelines.steps.base import Param, StepContext, StepKind, numbers, register


_VERSION_NAMES = {"images", "annotations", "classes", "train_images", "valid_images", "test_images"}
_VERSION_KEYS = ("split", "resplit", "seed", "group_by", "preprocess", "augment", "near_duplicates")


def _version_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"]} | {k: ctx.params.get(k) for k in _VERSION_KEYS}


def _version_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.versions import create_version

    p = ctx.params
    s = create_version(
        ctx.store, ctx.project, workspace=ctx.workspace, split=p.get("split"), resplit=bool(p.get("resplit")),
        seed=p.get("seed") or 0, group_by=p.get("group_by"), preprocess=p.get("preprocess"), augment=p.get("augment"),
        near_duplicates=p.get("near_duplicates", True) is not False,
    )
    splits = s.counts.get("splits", {})
    return {
        "version": s.version, "number": s.number, "ref": s.ref, "created": s.created,
        "images": s.counts.get("images", 0), "annotations": s.counts.get("annotations", 0), "classes": len(s.classes),
        **{f"{k}_images": splits.get(k, {}).get("images", 0) for k in ("train", "valid", "test")},
    }


def _version_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.errors import NotFoundError
    from winnow.services.versions import show_version

    try:
        return show_version(ctx.store, ctx.project, out["version"], workspace=ctx.workspace).version == out["version"]
    except (NotFoundError, InvalidInputError, KeyError):
        return False


register(StepKind(
    name="version",
    help="Snapshot the project as an immutable version (leak-free splits, preprocessing, augmentation).",
    params={
        "split": Param("text", help="split ratios, e.g. 'train=0.7,valid=0.2,test=0.1'"),
        "resplit": Param("bool", False, help="split every image again"),
        "seed": Param("int", 0, help="seed of the split"),
        "group_by": Param("texts", help="metadata keys whose values stay in one split"),
        "preprocess": Param("text", help="preprocessing steps (winnow version create --preprocess)"),
        "augment": Param("text", help="augmentation recipe (winnow version create --augment)"),
        "near_duplicates": Param("bool", True, help="keep near-duplicate clusters in one split"),
    },
    outputs=("version", "number", "ref", "created", *sorted(_VERSION_NAMES)),
    inputs=_version_inputs,
    run=_version_run,
    still_valid=_version_valid,
    gate_names=lambda task: set(_VERSION_NAMES),
    gate_env=lambda out, task: GateEnv(numbers(out, _VERSION_NAMES)),
))

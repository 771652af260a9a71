"""The ``select`` step: the next labelling batch, by active learning."""

from __future__ import annotations

from typing import Any

from winnow.pipelines.gates import GateEnv
from winnow.pipelines.steps.base import Param, StepContext, StepKind, numbers, project_row_exists, register
from winnow.pipelines.steps.models import model_row


_SELECT_NAMES = {"picked", "candidates", "labeled"}
_SELECT_KEYS = ("budget", "strategy", "seed", "near_duplicate", "batch_name", "assignee")


def _select_inputs(ctx: StepContext) -> dict[str, Any]:
    ref = ctx.params.get("model")
    model = model_row(ctx, ref)[0] if ref else None
    return {"project": [ctx.workspace, ctx.project], "state": ctx.state()["state"], "model": model} | {
        k: ctx.params.get(k) for k in _SELECT_KEYS
    }


def _select_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.selection import select_images

    p = ctx.params
    inputs = _select_inputs(ctx)
    r = select_images(
        ctx.store, ctx.project, budget=p["budget"], strategy=p["strategy"], model=inputs["model"], seed=p.get("seed") or 0,
        near_duplicate=p.get("near_duplicate"), workspace=ctx.workspace, batch_name=p.get("batch_name"), assignee=p.get("assignee"),
    )
    return {
        "picked": len(r.picked), "candidates": r.candidates, "labeled": r.labeled, "model": r.model,
        "batch": None if r.batch is None else r.batch["id"], "batch_name": None if r.batch is None else r.batch["name"],
        "images": [x["image"] for x in r.picked], "notes": list(r.notes),
    }


def _select_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.store import models as m

    return project_row_exists(ctx, m.QueueBatch, out.get("batch"))


register(StepKind(
    name="select",
    help="Pick the unlabeled images worth labelling next (active learning) into a labeling batch.",
    params={
        "budget": Param("int", required=True, help="how many images to pick"),
        "strategy": Param("text", "uncertainty", help="uncertainty, margin, entropy, diversity, hybrid, slice or random"),
        "model": Param("text", help="the model to score with (default: the last train step's, else the newest ready)"),
        "seed": Param("int", 0),
        "near_duplicate": Param("number"),
        "batch_name": Param("text"),
        "assignee": Param("text"),
    },
    outputs=("picked", "candidates", "labeled", "model", "batch", "batch_name", "images", "notes"),
    inputs=_select_inputs,
    run=_select_run,
    still_valid=_select_valid,
    gate_names=lambda task: set(_SELECT_NAMES),
    gate_env=lambda out, task: GateEnv(numbers(out, _SELECT_NAMES)),
))

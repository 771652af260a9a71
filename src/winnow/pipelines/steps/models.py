"""The ``train``, ``evaluate`` and ``deploy`` steps."""

from __future__ import annotations

from typing import Any

from winnow.errors import InvalidInputError
from winnow.pipelines.gates import GateEnv, GateSyntaxError
from winnow.pipelines.steps.base import Param, StepContext, StepKind, register


# ---------------------------------------------------------------------- train

_TRAIN_KEYS = ("model", "epochs", "image_size", "batch_size", "lr", "optimizer", "weight_decay", "seed", "pretrained", "width")


def _version_id(ctx: StepContext, ref: Any) -> str:
    from winnow.services.versions import show_version

    return show_version(ctx.store, ctx.project, None if ref in (None, "latest") else str(ref), workspace=ctx.workspace).version


def model_row(ctx: StepContext, ref: Any, *, include_base: bool = False) -> tuple[str, str, str]:
    """``(model id, name, version id)`` of the workspace's model ``ref`` (name or id prefix);
    ``include_base``: also a model of the base project a customer project forks (read-only uses)."""
    from winnow.services.training import resolve_model

    if not ref:
        raise InvalidInputError("'model' is required (a model name or id, or ${steps.ID.outputs.model})")
    with ctx.store.read() as session:
        row, _ = resolve_model(session, str(ref), ctx.workspace, include_base=include_base)
        return row.model_id, row.name, row.version_id


def _train_inputs(ctx: StepContext) -> dict[str, Any]:
    inputs = {"project": [ctx.workspace, ctx.project], "version": _version_id(ctx, ctx.params.get("version"))} | {
        k: ctx.params.get(k) for k in _TRAIN_KEYS
    }
    if init := ctx.params.get("from"):  # only when used, so the fingerprints of other trainings stay
        inputs["from"] = model_row(ctx, init, include_base=True)[0]
    if ctx.params.get("base_mix") is not None:
        inputs["base_mix"] = ctx.params["base_mix"]
    return inputs


def _train_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.training import train_model

    p = ctx.params
    kwargs = {k: p[k] for k in _TRAIN_KEYS if p.get(k) is not None}
    if "model" in kwargs:
        kwargs["model"] = str(kwargs["model"])
    inputs = _train_inputs(ctx)
    if "from" in inputs:
        kwargs["init_from"] = inputs["from"]  # the model id: what the step's fingerprint holds
    if p.get("base_mix") is not None:
        kwargs["base_mix"] = float(p["base_mix"])
    s = train_model(ctx.store, ctx.project, _version_id(ctx, p.get("version")), workspace=ctx.workspace, **kwargs)
    if s.status != "ready":
        raise InvalidInputError(f"model {s.name} is {s.status}: {s.metrics.get('error', '')}")
    valid = {k: v for k, v in (s.metrics.get("valid") or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    epochs = s.metrics.get("epochs") or []
    return {
        "model": s.model, "name": s.name, "version": s.version, "backend": s.backend, "created": s.created,
        "metrics": valid, "loss": epochs[-1]["loss"] if epochs else None, "split": s.metrics.get("split"),
    }


def _train_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.errors import NotFoundError
    from winnow.services.training import show_model

    try:
        s = show_model(ctx.store, out["model"], workspace=ctx.workspace)
    except (NotFoundError, InvalidInputError, KeyError):
        return False
    return s.model == out["model"] and s.status == "ready" and s.project == ctx.project


register(StepKind(
    name="train",
    help="Train a model on a version and register it (the same version and parameters give the same model).",
    params={
        "version": Param("text", help="a version (id, vN, name, latest or ${steps.ID.outputs.version})"),
        "model": Param("text", help="the backend, e.g. ssdlite, mobilenet_v3_small (default: the task's)"),
        "epochs": Param("int", 10),
        "image_size": Param("int"),
        "batch_size": Param("int"),
        "lr": Param("number"),
        "optimizer": Param("text"),
        "weight_decay": Param("number"),
        "seed": Param("int"),
        "pretrained": Param("text", help="auto, yes or no (never downloads)"),
        "width": Param("number"),
        "from": Param("text", help="fine-tune from this model's weights (name or id; a customer may name its base's)"),
        "base_mix": Param("number", help="share of a fork's inherited train images to train on, 0..1 (default: all)"),
    },
    outputs=("model", "name", "version", "backend", "created", "metrics", "loss", "split"),
    inputs=_train_inputs,
    run=_train_run,
    still_valid=_train_valid,
    gate_names=lambda task: None,
    gate_env=lambda out, task: GateEnv(dict(out.get("metrics") or {}) | {"loss": out.get("loss")}),
))


# ---------------------------------------------------------------------- evaluate


def _slice_metric(task: str) -> str:
    return "accuracy" if task == "classify" else "map50"


def _metric_arg(arg: str, params: dict[str, Any], task: str) -> None:
    if arg != _slice_metric(task):
        raise GateSyntaxError(f"slices of a {task} evaluation are measured in {_slice_metric(task)}, not {arg!r}")


def _evaluate_inputs(ctx: StepContext) -> dict[str, Any]:
    model, _, trained_on = model_row(ctx, ctx.params.get("model"), include_base=True)
    ref = ctx.params.get("version")
    version = _version_id(ctx, ref) if ref is not None else trained_on
    keep = ("split", "score_threshold", "bootstrap")
    return {"project": [ctx.workspace, ctx.project], "model": model, "version": version} | {k: ctx.params.get(k) for k in keep}


def _evaluate_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.evaluation import evaluate_model

    p = ctx.params
    inputs = _evaluate_inputs(ctx)
    kwargs: dict[str, Any] = {"split": p.get("split") or "test"}
    if p.get("score_threshold") is not None:
        kwargs["score_threshold"] = float(p["score_threshold"])
    if p.get("bootstrap") is not None:
        kwargs["n_bootstrap"] = int(p["bootstrap"])
    ev = evaluate_model(ctx.store, inputs["model"], ctx.project, inputs["version"], workspace=ctx.workspace, **kwargs)
    doc = ev.report.as_dict()
    skip = {"stats", "counts", "per_class", "pr_curves", "confusion_matrix", "errors", "slices", "calibration", "classes", "top_k"}
    metrics = {k: v for k, v in doc.items() if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)}
    slices_doc = doc.get("slices") or {}
    keep = ("kind", "name", "images", "score", "ci_low", "ci_high", "ranked")
    slices = [{k: s.get(k) for k in keep} for s in slices_doc.get("slices", [])]
    return {
        "model": inputs["model"], "version": inputs["version"], "split": ev.split, "metric": slices_doc.get("metric"),
        "metrics": metrics, "overall": slices_doc.get("overall"), "images": len(ev.images), "slices": slices,
        "worst_slices": [s.get("name") for s in slices_doc.get("worst_slices", [])],
    }


def _evaluate_env(out: dict[str, Any], task: str) -> GateEnv:
    metric = out.get("metric") or _slice_metric(task)
    slices = out.get("slices") or []

    def _check(name: str) -> None:
        if name != metric:
            raise GateSyntaxError(f"the slices were measured in {metric}, not {name!r}")

    def min_slice(name: str) -> float | None:
        _check(name)
        scores = [s["score"] for s in slices if s.get("ranked") and s.get("score") is not None]
        return min(scores) if scores else None

    def max_slice(name: str) -> float | None:
        _check(name)
        scores = [s["score"] for s in slices if s.get("ranked") and s.get("score") is not None]
        return max(scores) if scores else None

    def slice_(name: str) -> float | None:
        for s in slices:
            if s.get("name") == name:
                return s.get("score")
        return None

    names = dict(out.get("metrics") or {}) | {"overall": out.get("overall"), "images": out.get("images")}
    return GateEnv(
        {k: (None if isinstance(v, float) and v < 0 else v) for k, v in names.items()},  # COCO's -1: undefined
        {"min_slice": min_slice, "max_slice": max_slice, "slice": slice_},
    )


def _evaluated_model_ready(ctx: StepContext, out: dict[str, Any]) -> bool:
    """The evaluated model is still registered and ready (a fork may have evaluated its base's)."""
    from winnow.errors import NotFoundError
    from winnow.services.training import resolve_model

    try:
        with ctx.store.read() as session:
            row, _ = resolve_model(session, out["model"], ctx.workspace, include_base=True)
            return row.model_id == out["model"] and row.status == "ready"
    except (NotFoundError, InvalidInputError, KeyError):
        return False


register(StepKind(
    name="evaluate",
    help="Evaluate a model on a split of a version, overall and by slice.",
    params={
        "model": Param("text", help="a model (name, id or ${steps.ID.outputs.model})"),
        "version": Param("text", help="the version to evaluate on (default: the model's own)"),
        "split": Param("text", "test", choices=("train", "valid", "test")),
        "score_threshold": Param("number"),
        "bootstrap": Param("int", help="bootstrap resamples of the slice intervals"),
    },
    outputs=("model", "version", "split", "metric", "metrics", "overall", "images", "slices", "worst_slices"),
    inputs=_evaluate_inputs,
    run=_evaluate_run,
    still_valid=lambda ctx, out: _evaluated_model_ready(ctx, out),
    gate_names=lambda task: None,
    gate_functions={"min_slice": _metric_arg, "max_slice": _metric_arg, "slice": None},
    gate_env=_evaluate_env,
))


# ---------------------------------------------------------------------- deploy


def _deploy_inputs(ctx: StepContext) -> dict[str, Any]:
    return {"project": [ctx.workspace, ctx.project], "model": model_row(ctx, ctx.params.get("model"))[0]}


def _deploy_run(ctx: StepContext) -> dict[str, Any]:
    from winnow.services.deploy import deploy

    s = deploy(ctx.store, _deploy_inputs(ctx)["model"], workspace=ctx.workspace, project=ctx.project)
    return {"model": s.model, "name": s.name, "deployment": s.deployment, "changed": s.changed}


def _deploy_valid(ctx: StepContext, out: dict[str, Any]) -> bool:
    from winnow.services.deploy import active_model

    active = active_model(ctx.store, ctx.project, ctx.workspace)
    return active is not None and active.model == out.get("model") and active.deployment == out.get("deployment")


register(StepKind(
    name="deploy",
    help="Make a model the project's active (served) model.",
    params={"model": Param("text", help="a model (name, id or ${steps.ID.outputs.model})")},
    outputs=("model", "name", "deployment", "changed"),
    inputs=_deploy_inputs,
    run=_deploy_run,
    still_valid=_deploy_valid,
))

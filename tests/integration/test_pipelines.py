"""Pipelines end to end on a real store: a second run skips every step, a changed label re-runs
what depends on the project (not the imports), a failing gate exits 2 and stops the run, fixes
settle, ``--force``/``--from``, errors exit 1, and the run record holds steps, fingerprints,
outputs and timings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from winnow.cli.main import app
from winnow.formats import get_format
from winnow.formats.base import copy_from_file
from winnow.pipelines.runner import list_runs, run_pipeline, show_run
from winnow.pipelines.spec import load_pipeline
from winnow.pipelines.state import project_state
from winnow.store import models as m
from winnow.store.db import Store
from winnow.synthetic import generate

torch = pytest.importorskip("torch")

TINY = """
name: tiny
project: tiny
task: classify
steps:
  - id: labelled
    uses: import
    with: {builtin: shapes, images: 30, seed: 3}
  - id: pool
    uses: import
    with: {builtin: shapes, images: 8, seed: 4, labels: false, prefix: pool, tags: [unlabeled]}
  - uses: fix
  - uses: check
    with: {only: [exact_duplicate, split_leakage, class_imbalance]}
    gates: ["count(split_leakage) == 0", "images >= 30"]
  - id: v1
    uses: version
    with: {split: "train=0.7,valid=0.3", seed: 1}
  - uses: train
    with: {version: "${steps.v1.outputs.version}", model: mobilenet_v3_small, epochs: 1, image_size: 32, width: 0.25,
           batch_size: 8, pretrained: "no"}
  - uses: evaluate
    with: {split: valid, bootstrap: 20}
    gates: ["accuracy >= 0", "min_slice(accuracy) >= 0"]
  - uses: deploy
  - uses: select
    with: {budget: 3, strategy: uncertainty}
    gates: ["picked == 3"]
"""

CLEAN = """
name: clean
project: clean
steps:
  - uses: import
    with: {path: data}
  - uses: fix
  - uses: check
    with: {only: [exact_duplicate, split_leakage, degenerate_box]}
    gates: ["count(exact_duplicate) == 0", "count(split_leakage) == 0"]
  - uses: version
    gates: ["images >= 11"]
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write(tmp_path: Path, text: str, name: str = "winnow.yaml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def _cli(home: Path, *args: str, monkeypatch) -> object:
    monkeypatch.setenv("WINNOW_HOME", str(home))
    return CliRunner().invoke(app, list(args))


def _count(store: Store, table) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(table))


def _statuses(report) -> dict[str, str]:
    return {s.id: s.status for s in report.steps}


def _data_with_a_duplicate(root: Path) -> Path:
    """12 generated detection images as COCO, one of them twice under another name (same labels)."""
    ds = generate(root / "raw", 11, seed=5)
    for i, rec in enumerate(ds.images):
        rec.split = "train" if i < 8 else "valid"
    twin = ds.images[0]
    copy = type(twin)(name="images/copy_of_0.png", width=twin.width, height=twin.height,
                      annotations=list(twin.annotations), file=twin.file, split="train")
    ds.images.append(copy)
    get_format("coco").write(ds, root / "data", copy_from_file)
    return root / "data"


# ----------------------------------------------------------------------------- the whole loop


def test_a_second_run_skips_every_step_and_a_changed_label_reruns_only_what_depends_on_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    f = _write(tmp_path, TINY)

    first = _cli(home, "run", str(f), "--json", monkeypatch=monkeypatch)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["status"] == "ok" and doc["exit_code"] == 0
    assert [s["status"] for s in doc["steps"]] == ["ran"] * 9
    out = {s["id"]: s["outputs"] for s in doc["steps"]}
    assert out["labelled"]["images_added"] == 30 and out["pool"]["images_added"] == 8
    assert out["train"]["version"] == out["v1"]["version"] and out["evaluate"]["model"] == out["train"]["model"]
    assert out["deploy"]["model"] == out["train"]["model"] and out["select"]["picked"] == 3
    assert all(s["images"].startswith("pool/") for s in [{"images": x} for x in out["select"]["images"]])

    store = Store.open(home)
    versions, models, batches = _count(store, m.Version), _count(store, m.Model), _count(store, m.QueueBatch)
    assert (versions, models, batches) == (1, 1, 1)

    # the same file again: every step skipped, nothing new made, outputs reused from run 1
    second = run_pipeline(store, load_pipeline(f))
    assert second.status == "ok" and set(_statuses(second).values()) == {"skipped"}
    assert all(s.reused_from == doc["run"] for s in second.steps)
    assert {s.id: s.outputs for s in second.steps} == out
    assert [s.fingerprint for s in second.steps] == [s["fingerprint"] for s in doc["steps"]]
    assert (_count(store, m.Version), _count(store, m.Model), _count(store, m.QueueBatch)) == (1, 1, 1)
    assert all(g["passed"] for s in second.steps for g in s.gates), "gates are checked on skipped steps too"

    # one label changed (as a labeller would): what reads the project runs again, the imports do not
    from winnow.services.annotations import update_annotation

    with store.read() as session:
        ann_id, label = session.execute(
            select(m.Annotation.id, m.ProjectClass.name).join(m.Image).join(m.ProjectClass, m.ProjectClass.id == m.Annotation.class_id)
            .where(m.Image.name.notlike("pool/%")).order_by(m.Image.name).limit(1)
        ).one()
    update_annotation(store, "tiny", ann_id, label="square" if label != "square" else "circle")
    third = run_pipeline(store, load_pipeline(f))
    assert third.status == "ok", third.error
    assert _statuses(third) == {
        "labelled": "skipped", "pool": "skipped", "fix": "ran", "check": "ran", "v1": "ran",
        "train": "ran", "evaluate": "ran", "deploy": "ran", "select": "ran",
    }
    new = {s.id: s.outputs for s in third.steps}
    assert new["v1"]["version"] != out["v1"]["version"] and new["train"]["model"] != out["train"]["model"]
    assert (_count(store, m.Version), _count(store, m.Model)) == (2, 2)

    # and then nothing again
    fourth = run_pipeline(store, load_pipeline(f))
    assert set(_statuses(fourth).values()) == {"skipped"}

    # the record: every run, its steps with fingerprints, inputs, outputs, gates and timings
    runs = list_runs(store, workspace="default", pipeline="tiny")
    assert [r["run"] for r in runs] == [fourth.run, third.run, second.run, doc["run"]]
    assert runs[1]["counts"] == {"skipped": 2, "ran": 7}
    shown = show_run(store, third.run, workspace="default")
    assert [s["id"] for s in shown["steps"]] == [s.id for s in third.steps]
    for s in shown["steps"]:
        assert len(s["fingerprint"]) == 64 and s["inputs"] and s["outputs"] is not None
        assert s["seconds"] >= 0 and s["started_at"]
    train = next(s for s in shown["steps"] if s["id"] == "train")
    assert train["inputs"]["version"] == new["v1"]["version"] and train["inputs"]["epochs"] == 1
    assert next(s for s in shown["steps"] if s["id"] == "check")["gates"][0] == {
        "gate": "count(split_leakage) == 0", "passed": True, "values": {"count(split_leakage)": 0}, "actual": "count(split_leakage) = 0",
    }
    with store.read() as session:
        rows = session.scalars(select(m.PipelineStep).where(m.PipelineStep.run_id == third.run).order_by(m.PipelineStep.position)).all()
        assert [r.status for r in rows] == [s.status for s in third.steps]
    folder = Path(third.out_dir)
    assert json.loads((folder / "run.json").read_text())["run"] == third.run
    html = (folder / "report.html").read_text()
    assert "<script" not in html and "count(split_leakage) == 0" in html and "tiny" in html


# ----------------------------------------------------------------------------- gates


def test_a_failing_gate_exits_2_names_the_gate_and_its_value_and_stops_the_run(tmp_path, monkeypatch):
    home = tmp_path / "home"
    f = _write(tmp_path, CLEAN.replace('"count(split_leakage) == 0"', '"images >= 1000"'))
    _data_with_a_duplicate(tmp_path)

    result = _cli(home, "run", str(f), monkeypatch=monkeypatch)
    assert result.exit_code == 2, result.output
    assert "gate failed at step 'check': images >= 1000 (images = 11)" in result.output
    assert "not_run" in result.output

    store = Store.open(home)
    report = show_run(store, 1, workspace="default")
    assert report["status"] == "gate_failed" and report["exit_code"] == 2
    assert report["failed_gate"] == {"step": "check", "gate": "images >= 1000", "passed": False,
                                     "values": {"images": 11}, "actual": "images = 11"}
    assert [s["status"] for s in report["steps"]] == ["ran", "ran", "failed", "not_run"]
    assert _count(store, m.Version) == 0, "the step after the failed gate did not run"

    # run again: the check is not run again (nothing changed) but its gate still fails
    again = _cli(home, "run", str(f), "--json", monkeypatch=monkeypatch)
    assert again.exit_code == 2
    doc = json.loads(again.stdout)
    assert [s["status"] for s in doc["steps"]] == ["skipped", "skipped", "failed", "not_run"]
    assert doc["failed_gate"]["actual"] == "images = 11"


# ----------------------------------------------------------------------------- settling, --force, --from


def test_fixes_settle_and_force_and_from_rerun_what_they_say(tmp_path):
    _data_with_a_duplicate(tmp_path)
    f = _write(tmp_path, CLEAN)
    store = Store.open(tmp_path / "home")

    first = run_pipeline(store, load_pipeline(f))
    assert first.status == "ok", first.error or first.failed_gate
    out = {s.id: s.outputs for s in first.steps}
    assert out["import"]["images_added"] == 12 and out["fix"]["findings_applied"] == 1 and out["fix"]["images_removed"] == 1
    assert out["check"]["by_check"]["exact_duplicate"] == 0 and out["version"]["images"] == 11

    # the fix changed the project: the project is now in the state it left, so it is done
    second = run_pipeline(store, load_pipeline(f))
    assert set(_statuses(second).values()) == {"skipped"}
    fix, fix_before = (next(s for s in r.steps if s.id == "fix") for r in (second, first))
    assert fix.fingerprint == fix.settled == fix_before.settled != fix_before.fingerprint

    # undo the fix: the duplicate is back, so the fix runs again (and the check and version after it)
    from winnow.services.fixes import undo

    undo(store, "clean", out["fix"]["change_id"])
    third = run_pipeline(store, load_pipeline(f))
    assert _statuses(third) == {"import": "skipped", "fix": "ran", "check": "skipped", "version": "skipped"}
    assert next(s for s in third.steps if s.id == "fix").outputs["findings_applied"] == 1

    forced = run_pipeline(store, load_pipeline(f), force=True)
    assert set(_statuses(forced).values()) == {"ran"} and forced.forced == ["import", "fix", "check", "version"]
    # forced, the import brings back the record the fix merged away, and the fix merges it again
    forced_out = {s.id: s.outputs for s in forced.steps}
    assert forced_out["import"]["images_added"] == 1 and forced_out["fix"]["findings_applied"] == 1

    tail = run_pipeline(store, load_pipeline(f), from_step="check")
    assert _statuses(tail) == {"import": "skipped", "fix": "skipped", "check": "ran", "version": "ran"}
    assert _count(store, m.Version) == 1, "the same content is the same version"

    # the import's outputs are gone when the project is: it runs again
    from winnow.services.projects import delete_project

    delete_project(store, "clean")
    shutil.rmtree(tmp_path / "home" / "runs")
    fresh = run_pipeline(store, load_pipeline(f))
    assert _statuses(fresh)["import"] == "ran" and fresh.status == "ok"


def test_the_project_state_changes_with_a_label_and_comes_back_with_undo(tmp_path):
    _data_with_a_duplicate(tmp_path)
    store = Store.open(tmp_path / "home")
    run_pipeline(store, load_pipeline(_write(tmp_path, CLEAN)))
    before = project_state(store, "clean")
    from winnow.services.annotations import update_annotation
    from winnow.services.fixes import undo

    with store.read() as session:
        ann_id = session.scalar(select(m.Annotation.id).order_by(m.Annotation.id).limit(1))
    change = update_annotation(store, "clean", ann_id, bbox=[1, 1, 20, 20])["change_id"]
    assert project_state(store, "clean")["state"] != before["state"]
    undo(store, "clean", change)
    assert project_state(store, "clean") == before, "ids and times are not content: an undone edit is the same state"
    # so the pipeline finds nothing to do
    again = run_pipeline(store, load_pipeline(tmp_path / "winnow.yaml"))
    assert set(_statuses(again).values()) == {"skipped"}


# ----------------------------------------------------------------------------- errors


def test_errors_exit_1_with_the_step_named_and_the_run_recorded(tmp_path, monkeypatch):
    home = tmp_path / "home"
    bad_spec = _write(tmp_path, "project: p\nsteps:\n  - uses: version\n    with: {seeds: 1}\n", "bad.yaml")
    result = _cli(home, "run", str(bad_spec), monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "step 'version': version has no parameter 'seeds'" in result.output

    missing = _write(tmp_path, "project: p\nsteps:\n  - uses: import\n    with: {path: nowhere}\n  - uses: version\n", "missing.yaml")
    result = _cli(home, "run", str(missing), "--json", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and [s["status"] for s in doc["steps"]] == ["error", "not_run"]
    assert "nowhere does not exist" in doc["steps"][0]["error"] and "step 'import' (import)" in doc["error"]

    listed = _cli(home, "runs", "list", "--json", monkeypatch=monkeypatch)
    assert [r["status"] for r in json.loads(listed.stdout)] == ["error"]
    shown = _cli(home, "runs", "show", str(doc["run"]), monkeypatch=monkeypatch)
    assert shown.exit_code == 0 and "import" in shown.output and "error" in shown.output
    assert _cli(home, "runs", "show", "99", monkeypatch=monkeypatch).exit_code == 1

    wrong_task = _write(tmp_path, "project: p\ntask: classify\nsteps:\n  - uses: version\n", "task.yaml")
    result = _cli(home, "run", str(wrong_task), monkeypatch=monkeypatch)
    assert result.exit_code == 1 and "project 'p' is a detect project; the pipeline says task: classify" in result.output


# ----------------------------------------------------------------------------- the examples

LABEL = """
name: labelling
project: labelling
steps:
  - id: labelled
    uses: import
    with: {builtin: shapes, images: 12, seed: 3}
  - id: pool
    uses: import
    with: {builtin: shapes, images: 6, seed: 4, labels: false, prefix: pool, tags: [unlabeled]}
  - uses: label
    with: {builtin: shapes, images: 6, seed: 4, prefix: pool, only: [pool/images/img_00001.png, pool/images/img_00004.png]}
    gates: ["images_relabeled == 2", "errors == 0"]
"""


def test_the_builtin_ground_truth_labels_only_the_images_named(tmp_path):
    from winnow.services.datasets import load_dataset

    store = Store.open(tmp_path / "home")
    first = run_pipeline(store, load_pipeline(_write(tmp_path, LABEL)))
    assert _statuses(first) == {"labelled": "ran", "pool": "ran", "label": "ran"}
    truth = {f"pool/{r.name}": [a.label for a in r.annotations] for r in generate(tmp_path / "gt", 6, seed=4, max_objects=4).images}
    pool = {r.name: r for r in load_dataset(store, "labelling").images if r.name.startswith("pool/")}
    for name, rec in pool.items():
        if name in ("pool/images/img_00001.png", "pool/images/img_00004.png"):
            assert sorted(a.label for a in rec.annotations) == sorted(truth[name]) and "unlabeled" not in rec.tags
        else:
            assert rec.annotations == [] and "unlabeled" in rec.tags
    again = run_pipeline(store, load_pipeline(tmp_path / "winnow.yaml"))
    assert set(_statuses(again).values()) == {"skipped"}


@pytest.mark.parametrize("name", ["demo.yaml", "minimal.yaml"])
def test_the_shipped_examples_load(name):
    pipeline = load_pipeline(Path(__file__).resolve().parents[2] / "examples" / name)
    kinds = [s.uses for s in pipeline.steps]
    assert kinds[0] == "import" and "version" in kinds
    if name == "demo.yaml":  # the loop up to the next batch for the labelling team
        assert kinds[-4:] == ["train", "evaluate", "deploy", "select"]


# ----------------------------------------------------------------------------- a customer's loop

CUSTOMER = """
name: cust-loop
project: cust
workspace: acme
task: classify
steps:
  - uses: import
    with: {builtin: shapes, images: 12, seed: 9, prefix: own}
  - id: v
    uses: version
    with: {split: "train=0.7,valid=0.3", seed: 1}
  - id: ft
    uses: train
    with: {version: "${steps.v.outputs.version}", from: base-m, base_mix: BASE_MIX, model: mobilenet_v3_small, epochs: 1,
           image_size: 32, width: 0.25, batch_size: 8, pretrained: "no"}
  - id: base_on_customer
    uses: evaluate
    with: {model: base-m, version: "${steps.v.outputs.version}", split: valid, bootstrap: 20}
"""


def test_a_customer_pipeline_fine_tunes_from_its_bases_model(tmp_path, monkeypatch):
    """A fork's loop as a pipeline file: its own images, a version (with the inherited ones), a
    fine-tune ``from`` the base's model with a ``base_mix``, and the base model evaluated on the
    customer's images; a second run skips everything, a new base mix retrains only the model."""
    from winnow.core.types import Task
    from winnow.services.forks import fork_project
    from winnow.services.ingest import import_records
    from winnow.services.projects import create_project
    from winnow.services.training import show_model, train_model
    from winnow.services.versions import create_version

    home = tmp_path / "home"
    store = Store.open(home)
    create_project(store, "base", "classify")
    base = generate(tmp_path / "base", 20, seed=2, task=Task.CLASSIFY)
    import_records(store, "base", base, tmp_path / "base")
    create_version(store, "base", split="train=0.7,valid=0.3", seed=1)
    base_m = train_model(store, "base", None, model="mobilenet_v3_small", epochs=1, image_size=32, width=0.25, batch_size=8,
                         pretrained="no", name="base-m")
    fork_project(store, "base", "v1", "cust", workspace="acme")

    f = _write(tmp_path, CUSTOMER.replace("BASE_MIX", "0.5"))
    first = _cli(home, "run", str(f), "--json", monkeypatch=monkeypatch)
    assert first.exit_code == 0, first.output
    out = {s["id"]: s["outputs"] for s in json.loads(first.stdout)["steps"]}
    ft = show_model(store, out["ft"]["model"], workspace="acme")
    assert ft.metrics["init"]["model"] == base_m.model and ft.params["init_from"] == base_m.model
    assert ft.name == "cust-mobilenet_v3_small-v1", "a fork's models are named apart from its base's"
    mix = ft.metrics["mix"]
    assert mix["base_mix"] == 0.5 and 0 < mix["base_train_images_used"] < mix["base_train_images_available"]
    assert out["base_on_customer"]["model"] == base_m.model and out["base_on_customer"]["version"] == out["v"]["version"]

    again = _cli(home, "run", str(f), "--json", monkeypatch=monkeypatch)
    assert [s["status"] for s in json.loads(again.stdout)["steps"]] == ["skipped"] * 4

    g = _write(tmp_path, CUSTOMER.replace("BASE_MIX", "0.25"), name="other.yaml")
    third = _cli(home, "run", str(g), "--json", monkeypatch=monkeypatch)
    steps = {s["id"]: s for s in json.loads(third.stdout)["steps"]}
    assert steps["ft"]["status"] == "ran" and steps["ft"]["outputs"]["model"] != out["ft"]["model"]
    assert steps["v"]["status"] == "skipped"

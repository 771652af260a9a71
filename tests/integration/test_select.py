"""``winnow select`` on a real store: a classification project of scikit-learn digits (PNG files),
a tiny model trained with ``train_model``, unlabeled and captured images, planted copies of
labeled images; the picks go into the labeling queue, the CLI's ``--json`` has the documented
fields, and bad inputs give errors that say what to do."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select

from winnow.core.types import (
    CAPTURED_TAG,
    UNLABELED_TAG,
    Annotation,
    Dataset,
    ImageRecord,
    Task,
)
from winnow.errors import ConflictError, InvalidInputError
from winnow.store import models as m

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from winnow.services.ingest import import_records
from winnow.services.projects import create_project
from winnow.services.selection import select_images
from winnow.services.training import train_model
from winnow.services.versions import create_version
from winnow.store.db import Store

N_LABELED, N_UNLABELED, N_CAPTURED = 120, 50, 10
COPIES = 4  # unlabeled images whose bytes are a labeled image's


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(path, pixels: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray((pixels * (255 / 16)).astype(np.uint8)).resize((32, 32), Image.Resampling.BILINEAR)
    im.convert("RGB").save(path)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    d = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(d.target))
    records = []
    for n, i in enumerate(order[: N_LABELED + N_UNLABELED + N_CAPTURED]):
        name = f"d{n:04d}.png"
        _png(root / name, d.images[i])
        if n < N_LABELED:
            records.append(ImageRecord(name, annotations=[Annotation(label=str(d.target[i]))], split="train" if n % 4 else "valid", file=root / name))
        elif n < N_LABELED + N_UNLABELED:
            records.append(ImageRecord(name, tags=[UNLABELED_TAG], file=root / name))
        else:
            records.append(ImageRecord(name, tags=[UNLABELED_TAG, CAPTURED_TAG], metadata={"camera": "cam-1"}, file=root / name))
    copies = []
    for k in range(COPIES):  # the same bytes as a labeled image, under another name, unlabeled
        name = f"copy{k}.png"
        (root / name).write_bytes((root / records[k].name).read_bytes())
        records.append(ImageRecord(name, tags=[UNLABELED_TAG], file=root / name))
        copies.append(name)
    home = root / "home"
    store = Store.open(home)
    create_project(store, "digits", "classify")
    classes = [str(c) for c in range(10)]
    import_records(store, "digits", Dataset(classes=classes, images=records, task=Task.CLASSIFY), root)
    version = create_version(store, "digits")
    model = train_model(store, "digits", version.version, epochs=1, image_size=32, width=0.25, batch_size=16, lr=0.01, name="tiny")
    labeled = {r.name for r in records[:N_LABELED]}
    return SimpleNamespace(store=store, home=home, model=model, labeled=labeled, copies=copies, root=root)


def _queued(store: Store, batch_id: int) -> list[tuple[str, float, dict, list]]:
    with store.read() as session:
        rows = session.execute(
            select(m.Image.name, m.QueueItem.score, m.QueueItem.reason, m.QueueItem.prelabels)
            .join(m.QueueItem, m.QueueItem.image_id == m.Image.id)
            .where(m.QueueItem.batch_id == batch_id)
            .order_by(m.QueueItem.position)
        ).all()
    return [tuple(r) for r in rows]


def test_margin_selection_becomes_a_batch_of_unlabeled_images_with_prelabels(digits):
    report = select_images(digits.store, "digits", budget=12, strategy="margin", batch_name="round-1", assignee="ann")
    assert report.model == digits.model.model and report.strategy == "margin"
    assert report.candidates == N_UNLABELED + N_CAPTURED + COPIES and report.labeled == N_LABELED
    assert len(report.picked) == 12 and report.batch is not None
    b = report.batch
    assert b["name"] == "round-1" and b["items"] == 12 and b["kind"] == "label" and b["strategy"] == "margin" and b["assignee"] == "ann"
    queued = _queued(digits.store, b["id"])
    names = [q[0] for q in queued]
    assert names == [p["image"] for p in report.picked]
    assert not set(names) & digits.labeled, "no labeled image is picked"
    assert not set(names) & set(digits.copies), "no copy of a labeled image is picked"
    assert report.excluded_near_duplicates >= COPIES
    for (_, score, reason, prelabels), p in zip(queued, report.picked, strict=True):
        assert reason["strategy"] == "margin" and reason["margin"] == pytest.approx(score, abs=1e-5)
        assert len(prelabels) == 1 and prelabels[0]["label"] == p["predicted"] and 0 <= prelabels[0]["score"] <= 1
    dry = select_images(digits.store, "digits", budget=12, strategy="random", create_batch=False)
    assert not {p["image"] for p in dry.picked} & set(names), "images waiting in the batch are no longer candidates"


def test_images_waiting_in_the_queue_are_not_candidates_and_a_second_batch_does_not_repeat(digits):
    first = select_images(digits.store, "digits", budget=5, strategy="random", seed=1)
    second = select_images(digits.store, "digits", budget=5, strategy="random", seed=1)
    a = {p["image"] for p in first.picked}
    b = {p["image"] for p in second.picked}
    assert len(a) == len(b) == 5 and not a & b
    assert second.waiting >= first.waiting + 5


def test_no_batch_is_a_dry_run_and_the_same_seed_gives_the_same_picks(digits):
    with digits.store.read() as session:
        before = session.scalar(select(m.QueueBatch.id).order_by(m.QueueBatch.id.desc()).limit(1))
    runs = [select_images(digits.store, "digits", budget=6, strategy=s, create_batch=False, seed=3) for s in ("diversity", "diversity", "hybrid")]
    assert runs[0].batch is None and [p["image"] for p in runs[0].picked] == [p["image"] for p in runs[1].picked]
    assert len(runs[2].picked) == 6 and all("distance" in p["reason"] for p in runs[2].picked)
    with digits.store.read() as session:
        after = session.scalar(select(m.QueueBatch.id).order_by(m.QueueBatch.id.desc()).limit(1))
    assert before == after, "nothing queued"


def test_every_strategy_runs_on_the_project(digits):
    for strategy in ("uncertainty", "entropy", "slice"):
        r = select_images(digits.store, "digits", budget=4, strategy=strategy, create_batch=False)
        assert len(r.picked) == 4 and all(p["image"] not in digits.labeled for p in r.picked)
    sliced = select_images(digits.store, "digits", budget=4, strategy="slice", create_batch=False)
    assert any(n.startswith("slice: scored") for n in sliced.notes)
    assert all("slice" in p["reason"] for p in sliced.picked)


def test_the_slice_strategy_favours_a_worst_image_condition(digits, monkeypatch):
    """Image conditions from the health checks (``condition:dark``) are slices too: when the
    model is worst on them, the budget goes to candidates in that condition."""
    from winnow.services import evaluation
    from winnow.services.datasets import load_dataset
    from winnow.services.training import predict

    records = load_dataset(digits.store, "digits").images
    held_out = [r for r in records if r.name in digits.labeled and r.split == "valid"]
    got = predict(digits.store, digits.model.model, held_out)
    wrong = [r.name for r, p in zip(held_out, got, strict=True) if p.predictions[0]["label"] != r.annotations[0].label]
    assert len(wrong) >= 5, "the tiny model must miss a few held-out digits for this test"
    candidates = sorted(r.name for r in records if UNLABELED_TAG in r.tags and r.name not in digits.copies)
    dark_candidates = set(candidates[::3])
    conditions = {name: ["dark"] for name in [*wrong, *dark_candidates]}  # the model is wrong on every dark image
    monkeypatch.setattr(evaluation, "health_conditions", lambda store, project, workspace: conditions)

    report = select_images(digits.store, "digits", budget=6, strategy="slice", create_batch=False)
    dark = [p for p in report.picked if p["reason"]["slice"] == "condition:dark"]
    assert all(p["image"] in dark_candidates and p["reason"]["slice_score"] == 0.0 for p in dark)
    # the budget is split in proportion to the error: the dark slice (error 1.0, the largest) gets
    # the largest share, far above its third of the candidates
    assert len(dark) >= 3 and len(dark) / 6 > len(dark_candidates) / len(candidates)


def test_bad_inputs_say_what_to_do(digits, tmp_path):
    with pytest.raises(InvalidInputError, match="unknown strategy 'smart'"):
        select_images(digits.store, "digits", budget=3, strategy="smart")
    with pytest.raises(InvalidInputError, match="budget"):
        select_images(digits.store, "digits", budget=0, strategy="random")
    select_images(digits.store, "digits", budget=1, strategy="random", batch_name="taken")
    with pytest.raises(ConflictError, match="taken"):
        select_images(digits.store, "digits", budget=1, strategy="random", batch_name="taken", seed=5)
    store = Store.open(tmp_path / "empty")
    create_project(store, "fresh", "classify")
    import_records(
        store, "fresh", Dataset(classes=["0"], images=[ImageRecord("d0000.png", tags=[UNLABELED_TAG], file=digits.root / "d0000.png")], task=Task.CLASSIFY), digits.root
    )
    with pytest.raises(InvalidInputError, match="needs a trained model.*random or diversity"):
        select_images(store, "fresh", budget=1, strategy="uncertainty")
    r = select_images(store, "fresh", budget=3, strategy="diversity")
    assert [p["image"] for p in r.picked] == ["d0000.png"] and r.model is None and r.batch["items"] == 1
    again = select_images(store, "fresh", budget=3, strategy="random")
    assert again.picked == [] and again.batch is None and any("no unlabeled image" in n for n in again.notes)


def test_cli_select_json_has_the_documented_fields(digits, monkeypatch):
    from typer.testing import CliRunner

    from winnow.cli.main import app

    monkeypatch.setenv("WINNOW_HOME", str(digits.home))
    result = CliRunner().invoke(app, ["select", "digits", "--budget", "3", "--strategy", "entropy", "--model", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("project", "strategy", "model", "budget", "candidates", "excluded_near_duplicates", "picked", "batch"):
        assert key in doc
    assert doc["project"] == "digits" and doc["strategy"] == "entropy" and doc["budget"] == 3 and len(doc["picked"]) == 3
    assert set(doc["picked"][0]) >= {"image", "score", "reason"} and doc["batch"]["items"] == 3
    text = CliRunner().invoke(app, ["select", "digits", "-n", "2", "--strategy", "margin", "--no-batch"])
    assert text.exit_code == 0 and "picked 2 of" in text.stdout and "not queued" in text.stdout
    bad = CliRunner().invoke(app, ["select", "digits", "-n", "2", "--strategy", "smart"])
    assert bad.exit_code == 1 and "unknown strategy" in bad.output and "Traceback" not in bad.output


def test_detection_selection_scores_images_from_their_boxes(tmp_path):
    """A tiny SSDlite on generated shapes; unlabeled generated images (some captured, on a camera)
    are scored by box uncertainty and queued with their boxes as pre-labels."""
    from tests.integration.test_versions import synthetic_store
    from winnow.synthetic import generate

    store = synthetic_store(tmp_path, n=12, seed=0)
    version = create_version(store, "shapes", split="train=0.6,valid=0.4", resplit=True, seed=1)
    train_model(store, "shapes", version.version, epochs=1, image_size=64, width=0.25, batch_size=8, lr=3e-3)
    fresh = generate(tmp_path / "fresh", 8, seed=9)
    for k, rec in enumerate(fresh.images):
        rec.name = f"fresh/{rec.name}"
        rec.annotations = []
        rec.tags = [UNLABELED_TAG] + ([CAPTURED_TAG] if k % 2 else [])
        rec.metadata = {"camera": "north" if k % 2 else "south"}
    import_records(store, "shapes", fresh, tmp_path / "fresh")
    fresh_names = {r.name for r in fresh.images}

    batches = []
    for strategy in ("entropy", "slice", "hybrid"):
        r = select_images(store, "shapes", budget=3, strategy=strategy, create_batch=strategy == "entropy")
        assert r.candidates == (8 if strategy == "entropy" else 5) and len(r.picked) == 3 and {p["image"] for p in r.picked} <= fresh_names
        for p in r.picked:
            assert 0.0 <= p["score"] <= 2.0
            assert all(set(d) >= {"label", "score", "bbox"} and d["score"] >= 0.5 for d in p["prelabels"])
        batches.append(r.batch)
    assert batches[1] is None and batches[2] is None
    queued = _queued(store, batches[0]["id"])
    assert len(queued) == 3 and all(reason["strategy"] == "entropy" and 0.0 <= reason["entropy"] <= 1.0 for _, _, reason, _ in queued)

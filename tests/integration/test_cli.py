"""The `winnow` command line: --json contracts, human output, errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from winnow.cli.main import app
from winnow.formats import get_format
from winnow.formats.base import copy_from_file
from winnow.synthetic import generate

runner = CliRunner()


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(*args: str):
    return json.loads(run(*args, "--json").stdout)


@pytest.fixture
def coco(tmp_path) -> Path:
    ds = generate(tmp_path / "raw", 8, seed=5)
    for i, rec in enumerate(ds.images):
        rec.split = "train" if i < 6 else "valid"
    get_format("coco").write(ds, tmp_path / "coco", copy_from_file)
    return tmp_path / "coco"


def test_project_lifecycle_json_contract(coco):
    created = run_json("project", "create", "shapes", "--task", "detect")
    assert created["name"] == "shapes" and created["task"] == "detect" and created["images"] == 0

    imported = run_json("import", "shapes", str(coco), "--tag", "first")
    assert set(imported) >= {
        "project", "source", "format", "import_id", "images_added", "annotations_added", "images_skipped",
        "annotations_skipped", "boxes_clipped", "classes_added", "duplicates", "problems", "seconds",
    }
    assert imported["format"] == "coco" and imported["images_added"] == 8

    shown = run_json("project", "show", "shapes")
    assert shown["images"] == 8 and shown["splits"] == {"train": 6, "valid": 2}
    assert shown["annotations"] == imported["annotations_added"] == sum(shown["class_counts"].values())
    assert shown["tags"] == {"first": 8}

    listed = run_json("project", "list")
    assert [p["name"] for p in listed["projects"]] == ["shapes"]

    images = run_json("images", "shapes", "--split", "valid")
    assert images["count"] == 2
    assert set(images["images"][0]) == {"name", "sha256", "width", "height", "split", "annotations", "classes", "tags", "metadata"}


def test_human_output_shows_class_balance(coco):
    run("project", "create", "shapes")
    out = run("import", "shapes", str(coco)).stdout
    assert "imported 8 images" in out
    shown = run("project", "show", "shapes").stdout
    assert "circle" in shown and "█" in shown


def test_export_then_import_with_detected_format(coco, tmp_path):
    run("project", "create", "a")
    run("import", "a", str(coco))
    exported = run_json("export", "a", str(tmp_path / "out"), "--format", "yolo")
    assert exported["images"] == 8 and (tmp_path / "out" / "data.yaml").is_file()
    run("project", "create", "b")
    back = run_json("import", "b", str(tmp_path / "out"))
    assert back["format"] == "yolo" and back["images_added"] == 8
    assert back["annotations_added"] == exported["annotations"]


def test_errors_are_one_line_with_exit_status_1(coco, tmp_path):
    result = run("import", "missing-project", str(coco), ok=False)
    assert result.exit_code == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.output
    result = run("project", "create", "x", "--task", "dance", ok=False)
    assert result.exit_code == 1 and "unknown task" in result.stderr
    run("project", "create", "x")
    result = run("project", "create", "x", "--json", ok=False)
    assert result.exit_code == 1 and json.loads(result.stdout)["type"] == "ConflictError"
    result = run("export", "x", str(tmp_path / "o"), "--format", "nope", ok=False)
    assert "unknown format" in result.stderr and "coco" in result.stderr
    result = run("project", "create", "<script>", ok=False)
    assert result.exit_code == 1


def test_verify_reports_a_corrupted_blob(coco, tmp_path):
    run("project", "create", "p")
    run("import", "p", str(coco))
    clean = run_json("verify")
    assert clean["ok"] and clean["checked"] == 8
    home = Path(os.environ["WINNOW_HOME"])
    blob = next(p for p in (home / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts)
    blob.write_bytes(blob.read_bytes() + b"x")
    result = runner.invoke(app, ["verify", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["corrupt"] == [blob.name] and not report["ok"]
    assert (home / "quarantine" / blob.name).is_file()


def test_formats_lists_every_format():
    names = {f["name"] for f in run_json("formats")["formats"]}
    assert names == {"coco", "yolo", "voc", "folders", "createml", "labelme", "csv", "images"}


def test_installed_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("winnow")
    result = subprocess.run(
        [str(exe), "project", "list", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, WINNOW_HOME=str(tmp_path / "h")),
        timeout=60,
    )
    assert result.returncode == 0 and json.loads(result.stdout) == {"projects": []}


def test_markup_in_dataset_strings_is_printed_verbatim(tmp_path):
    from winnow.core.types import Annotation, Dataset, ImageRecord
    from PIL import Image

    img = tmp_path / "ds" / "a.png"
    img.parent.mkdir()
    Image.new("RGB", (20, 20)).save(img)
    ds = Dataset(classes=["[bold]cat[/bold]"], images=[ImageRecord("a.png", 20, 20, [Annotation("[bold]cat[/bold]", bbox=(1, 1, 5, 5))])])
    ds.images[0].file = img
    get_format("coco").write(ds, tmp_path / "coco", copy_from_file)
    run("project", "create", "m")
    run("import", "m", str(tmp_path / "coco"))
    assert "[bold]cat[/bold]" in run("project", "show", "m").stdout


def test_a_bare_folder_of_images_imports_unlabelled_and_exports_back(tmp_path):
    from PIL import Image

    src = tmp_path / "scrape"
    for i, rel in enumerate(["a.jpg", "site1/b.png", "site2/b.png"]):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 10), (i * 40, 0, 0)).save(src / rel)
    (src / "broken.png").write_bytes(b"")
    run("project", "create", "raw", "--task", "segment")
    report = run_json("import", "raw", str(src))  # sub-folders are not classes in a segmentation project
    assert report["format"] == "images" and report["images_added"] == 3
    by_level = {p["level"]: p["message"] for p in report["problems"]}
    assert sorted(p["level"] for p in report["problems"]) == ["error", "warning"]  # the empty file; the reading
    assert "empty" in by_level["error"] and "--format folders" in by_level["warning"]
    listed = run_json("images", "raw")
    rows = listed["images"] if isinstance(listed, dict) else listed
    assert sorted(r["name"] for r in rows) == ["a.jpg", "site1/b.png", "site2/b.png"]
    assert run_json("export", "raw", str(tmp_path / "out"), "--format", "images")["images"] == 3
    assert (tmp_path / "out/site2/b.png").read_bytes() == (src / "site2/b.png").read_bytes()
    # in a classification project the same folder is class folders
    run("project", "create", "cls", "--task", "classify")
    assert run_json("import", "cls", str(src))["format"] == "folders"

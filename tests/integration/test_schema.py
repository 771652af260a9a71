"""Class schema migrations on a real store: add, rename, merge and split on a plain project change
its annotations and are recorded as numbered migrations; on a fork they change the class map and
so the next version's inherited labels; the base's migrations reach a fork's map at rebase while
the customer keeps its own names; versions record the schema; bad inputs change nothing; and the
``winnow class`` commands."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.integration.test_forks import (
    CUSTOMER_WS,
    add_own_images,
    cli,
    make_base,
    manifest,
    non_test_base,
    own,
    version,
)
from winnow.cli.main import app
from winnow.core.types import Annotation
from winnow.errors import ConflictError, InvalidInputError, NotFoundError
from winnow.services.forks import fork_project, rebase
from winnow.services.projects import show_project
from winnow.services.schema import (
    add_class,
    drop_inherited_class,
    merge_classes,
    rename_class,
    show_schema,
    split_class,
)
from winnow.services.versions import create_version
from winnow.store import models as m
from winnow.store.db import Store


def annotations(store: Store, project: str = "base", workspace: str = "default") -> dict[int, tuple[str, dict]]:
    """Every own annotation of the project: id -> (label, attributes)."""
    return {a.id: (a.label, dict(a.attributes or {})) for r in own(store, project, workspace).values() for a in r.annotations}


def by_label(anns: dict[int, tuple[str, dict]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for i, (label, _) in anns.items():
        out.setdefault(label, set()).add(i)
    return out


def inherited_annotations(store: Store, ref: str) -> list[tuple[str, str, tuple, dict]]:
    """The inherited annotations of a fork version: (base image name, label, box, attributes), sorted."""
    got = manifest(store, "acme", ref, CUSTOMER_WS)
    return sorted((n[len("base/"):], a.label, tuple(a.bbox), dict(a.attributes or {}))
                  for n, r in got.items() if n.startswith("base/") for a in r.annotations)


def base_annotations(store: Store, mapping) -> list[tuple[str, str, tuple, dict]]:
    """The base v1's non-test annotations as ``mapping(annotation)`` names them (``None``: left out)."""
    return sorted((n, label, tuple(a.bbox), dict(a.attributes or {}))
                  for n, r in non_test_base(store).items() for a in r.annotations
                  if (label := mapping(a)) is not None)


def version_schema(store: Store, project: str, number: int) -> dict:
    with store.read() as s:
        proj = s.scalar(select(m.Project).where(m.Project.name == project))
        return s.scalar(select(m.Version).where(m.Version.project_id == proj.id, m.Version.number == number)).summary["schema"]


# ----------------------------------------------------------------------------- plain project


def test_rename_merge_add_on_a_plain_project_change_annotations_and_record_migrations(tmp_path):
    store = make_base(tmp_path)
    before = by_label(annotations(store))

    mig = rename_class(store, "base", "circle", "ring")
    assert (mig.seq, mig.op, mig.params, mig.annotations) == (1, "rename", {"old": "circle", "new": "ring"}, len(before["circle"]))
    after = by_label(annotations(store))
    assert after["ring"] == before["circle"] and "circle" not in after  # the same annotations, renamed
    assert show_project(store, "base").classes == ["ring", "square", "triangle"]

    mig = merge_classes(store, "base", ["ring", "square"], "round")
    assert (mig.seq, mig.op, mig.annotations) == (2, "merge", len(before["circle"]) + len(before["square"]))
    after = by_label(annotations(store))
    assert after["round"] == before["circle"] | before["square"] and set(after) == {"round", "triangle"}
    assert set(show_project(store, "base").classes) == {"round", "triangle"}

    mig = add_class(store, "base", "hexagon")
    assert (mig.seq, mig.op, mig.annotations) == (3, "add", 0) and "hexagon" in mig.classes
    assert by_label(annotations(store)) == after

    schema = show_schema(store, "base")
    assert schema.seq == 3 and schema.class_map is None
    assert [(x["seq"], x["op"]) for x in schema.migrations] == [(1, "rename"), (2, "merge"), (3, "add")]
    assert schema.migrations[1]["params"] == {"sources": ["ring", "square"], "into": "round"}

    v = create_version(store, "base", near_duplicates=False)
    assert v.number == 2 and version_schema(store, "base", 1)["seq"] == 0 and version_schema(store, "base", 2)["seq"] == 3
    assert set(v.classes) == {"round", "triangle"}


def test_split_by_attribute_sends_each_annotation_to_its_class(tmp_path):
    store = make_base(tmp_path, attributes=True)
    before = annotations(store)
    circles = {i: attrs["size"] for i, (label, attrs) in before.items() if label == "circle"}
    assert set(circles.values()) == {"big", "small"}  # both kinds present

    mig = split_class(store, "base", "circle", ["big", "other"], by="size", default="other")
    assert mig.annotations == len(circles) and mig.params["by"] == "size" and mig.params["default"] == "other"
    after = annotations(store)
    for i, size in circles.items():  # "big" names a target; "small" does not, so the default
        assert after[i][0] == ("big" if size == "big" else "other")
    assert {i: v for i, v in after.items() if i not in circles} == {i: v for i, v in before.items() if i not in circles}
    assert "circle" not in show_project(store, "base").classes


# ----------------------------------------------------------------------------- fork


def _fork(tmp_path, *, attributes: bool = False) -> Store:
    store = make_base(tmp_path, attributes=attributes)
    fork_project(store, "base", "v1", "acme", workspace=CUSTOMER_WS)
    add_own_images(store, tmp_path, "acme", 6)
    return store


def test_migrations_on_a_fork_change_the_class_map_and_the_inherited_labels(tmp_path):
    store = _fork(tmp_path)
    own_before = by_label(annotations(store, "acme", CUSTOMER_WS))

    mig = rename_class(store, "acme", "circle", "ring", workspace=CUSTOMER_WS)
    assert mig.inherited_classes == 1 and mig.annotations == len(own_before["circle"])
    assert show_schema(store, "acme", workspace=CUSTOMER_WS).class_map == {"circle": "ring", "square": "square", "triangle": "triangle"}
    v = version(store)
    rename = {"circle": "ring"}
    assert inherited_annotations(store, v.version) == base_annotations(store, lambda a: rename.get(a.label, a.label))
    assert by_label(annotations(store, "acme", CUSTOMER_WS))["ring"] == own_before["circle"]

    mig = merge_classes(store, "acme", ["ring", "square"], "round", workspace=CUSTOMER_WS)
    assert mig.inherited_classes == 2
    assert show_schema(store, "acme", workspace=CUSTOMER_WS).class_map == {"circle": "round", "square": "round", "triangle": "triangle"}
    v = version(store)
    merge = {"circle": "round", "square": "round"}
    assert inherited_annotations(store, v.version) == base_annotations(store, lambda a: merge.get(a.label, a.label))
    assert set(v.classes) == {"round", "triangle"}

    mig = drop_inherited_class(store, "acme", "triangle", workspace=CUSTOMER_WS)
    assert (mig.op, mig.inherited_classes) == ("drop", 1)
    v = version(store)
    dropped = inherited_annotations(store, v.version)
    assert dropped == base_annotations(store, lambda a: None if a.label == "triangle" else merge.get(a.label, a.label))
    assert all(label != "triangle" for _, label, _, _ in dropped)
    got = manifest(store, "acme", v.version, CUSTOMER_WS)
    own_triangles = sum(a.label == "triangle" for n, r in got.items() if not n.startswith("base/") for a in r.annotations)
    assert own_triangles == len(own_before.get("triangle", ()))  # the customer's own triangles stay

    schema = show_schema(store, "acme", workspace=CUSTOMER_WS)
    assert [x["op"] for x in schema.migrations] == ["rename", "merge", "drop"] and schema.seq == 3
    assert version_schema(store, "acme", v.number) == {"seq": 3, "class_map": schema.class_map}
    assert v.recipe["base"]["class_map"] == {"circle": "round", "square": "round", "triangle": None}


def test_split_on_a_fork_maps_inherited_annotations_by_attribute(tmp_path):
    store = _fork(tmp_path, attributes=True)
    mig = split_class(store, "acme", "circle", ["big", "other"], by="size", default="other", workspace=CUSTOMER_WS)
    assert mig.inherited_classes == 1
    assert show_schema(store, "acme", workspace=CUSTOMER_WS).class_map["circle"] == {"by": "size", "into": ["big", "other"], "default": "other"}
    v = version(store)

    def split(a: Annotation) -> str:
        return a.label if a.label != "circle" else ("big" if a.attributes["size"] == "big" else "other")

    got = inherited_annotations(store, v.version)
    assert got == base_annotations(store, split)
    assert {label for _, label, _, _ in got} == {"big", "other", "square", "triangle"}


def test_base_migrations_reach_the_fork_map_at_rebase_and_the_customer_keeps_its_names(tmp_path):
    store = _fork(tmp_path, attributes=True)
    rename_class(store, "acme", "circle", "ring", workspace=CUSTOMER_WS)
    rename_class(store, "base", "circle", "disc")  # the customer calls it "ring" and keeps calling it so
    rename_class(store, "base", "square", "box")
    split_class(store, "base", "triangle", ["big", "small"], by="size")
    add_class(store, "base", "hexagon")
    v2 = create_version(store, "base", near_duplicates=False)
    assert version_schema(store, "base", 2)["seq"] == 4 and set(v2.classes) == {"disc", "box", "big", "small"}

    report = rebase(store, "acme", "v2", workspace=CUSTOMER_WS)
    assert report.class_map == {"disc": "ring", "box": "square", "big": "triangle", "small": "triangle", "hexagon": "hexagon"}
    notes = "\n".join(report.schema_notes)
    assert "renamed 'circle' to 'disc'" in notes and "it stays 'ring' here" in notes and "split 'triangle'" in notes
    v = version(store)
    assert set(v.classes) == {"ring", "square", "triangle"}
    mapping = {"circle": "ring"}  # what the customer called v1's classes
    assert inherited_annotations(store, v.version) == base_annotations(store, lambda a: mapping.get(a.label, a.label))


# ----------------------------------------------------------------------------- bad inputs


def _state(store: Store) -> tuple:
    with store.read() as s:
        migrations = len(list(s.scalars(select(m.ClassMigration))))
        maps = [dict(f.class_map) for f in s.scalars(select(m.ProjectFork))]
    return (annotations(store), annotations(store, "acme", CUSTOMER_WS), show_project(store, "base").classes,
            show_schema(store, "acme", workspace=CUSTOMER_WS).classes, migrations, maps)


def test_bad_inputs_give_clear_errors_and_change_nothing(tmp_path):
    store = _fork(tmp_path, attributes=True)
    state = _state(store)
    some_id = next(iter(annotations(store, "acme", CUSTOMER_WS)))
    cases = [
        (NotFoundError, "no class 'hexagon'", lambda: rename_class(store, "base", "hexagon", "hex")),
        (NotFoundError, "no class 'hexagon'", lambda: merge_classes(store, "base", ["circle", "hexagon"], "round")),
        (NotFoundError, "no class 'hexagon'", lambda: split_class(store, "base", "hexagon", ["a", "b"], by="size")),
        (ConflictError, "already has a class 'square'", lambda: rename_class(store, "base", "circle", "square")),
        (ConflictError, "already has a class 'square'", lambda: rename_class(store, "acme", "circle", "square", workspace=CUSTOMER_WS)),
        (ConflictError, "already has a class 'circle'", lambda: add_class(store, "base", "circle")),
        (ConflictError, "already has 'square'", lambda: split_class(store, "base", "circle", ["square", "big"], by="size")),
        (InvalidInputError, "at least two", lambda: split_class(store, "base", "circle", ["big"], by="size")),
        (InvalidInputError, "at least two", lambda: split_class(store, "base", "circle", ["big", "big"], by="size")),
        (InvalidInputError, "must be one of the targets", lambda: split_class(store, "base", "circle", ["a", "b"], by="size", default="c")),
        (InvalidInputError, "say how to split", lambda: split_class(store, "base", "circle", ["a", "b"])),
        (InvalidInputError, "inherited annotations", lambda: split_class(
            store, "acme", "circle", ["a", "b"], assign={some_id: "a"}, workspace=CUSTOMER_WS)),
        (InvalidInputError, "other than the target", lambda: merge_classes(store, "base", ["circle"], "circle")),
        (NotFoundError, "inherits no base class", lambda: drop_inherited_class(store, "base", "circle")),
        (NotFoundError, "inherits no base class 'hexagon'", lambda: drop_inherited_class(store, "acme", "hexagon", workspace=CUSTOMER_WS)),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()
        assert _state(store) == state, message

    # a split of a split of inherited annotations would leave them under a class that is gone
    split_class(store, "acme", "circle", ["big", "other"], by="size", default="other", workspace=CUSTOMER_WS)
    state = _state(store)
    with pytest.raises(InvalidInputError, match="splitting it again is not supported"):
        split_class(store, "acme", "other", ["o1", "o2"], by="kind", workspace=CUSTOMER_WS)
    assert _state(store) == state


# ----------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_class_commands_json(tmp_path):
    _fork(tmp_path, attributes=True)
    listed = cli("class", "list", "base")
    assert listed == {"project": "base", "classes": ["circle", "square", "triangle"], "seq": 0, "class_map": None, "migrations": []}

    added = cli("class", "add", "base", "hexagon")
    assert set(added) == {"project", "seq", "op", "params", "annotations", "inherited_classes", "classes"}
    assert (added["seq"], added["op"], added["params"]) == (1, "add", {"name": "hexagon"})
    renamed = cli("class", "rename", "base", "square", "box")
    assert renamed["seq"] == 2 and "box" in renamed["classes"] and renamed["annotations"] > 0
    merged = cli("class", "merge", "base", "box", "triangle", "--into", "angular")
    assert merged["params"] == {"sources": ["box", "triangle"], "into": "angular"}
    split = cli("class", "split", "base", "circle", "--into", "big,small", "--by", "size")
    assert split["params"]["into"] == ["big", "small"] and split["params"]["default"] == "big"
    listed = cli("class", "list", "base")
    assert [x["op"] for x in listed["migrations"]] == ["add", "rename", "merge", "split"] and listed["seq"] == 4
    assert set(listed["classes"]) == {"hexagon", "angular", "big", "small"}

    fork_renamed = cli("class", "rename", "acme", "circle", "ring", "-w", CUSTOMER_WS)
    assert fork_renamed["inherited_classes"] == 1
    dropped = cli("class", "drop", "acme", "triangle", "-w", CUSTOMER_WS)
    assert dropped["op"] == "drop" and dropped["params"] == {"base_class": "triangle"}
    fork_list = cli("class", "list", "acme", "-w", CUSTOMER_WS)
    assert fork_list["class_map"] == {"circle": "ring", "square": "square", "triangle": None}
    assert [x["op"] for x in fork_list["migrations"]] == ["rename", "drop"]

    err = cli("class", "rename", "base", "nope", "x", code=1)
    assert err["type"] == "NotFoundError" and "no class 'nope'" in err["error"]
    assert cli("class", "split", "base", "big", "--into", "only", "--by", "size", code=1)["type"] == "InvalidInputError"
    assert cli("class", "list", "base")["seq"] == 4

    text = runner.invoke(app, ["class", "list", "acme", "-w", CUSTOMER_WS]).stdout
    assert "circle" in text and "ring" in text and "(dropped)" in text and "rename" in text

"""``winnow project fork|rebase|base|adopt`` (customer projects on a base version) and
``winnow class list|add|rename|merge|split|drop`` (class schema migrations).

Registered by ``cli/main.py``: ``register_project_commands(project_app)`` adds the four project
commands to the existing ``project`` group, ``app.add_typer(class_app, name="class")``.
The services are :mod:`winnow.services.forks` and :mod:`winnow.services.schema`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _store, out
from winnow.config import DEFAULT_WORKSPACE

class_app = typer.Typer(
    help="A project's class schema: list, add, rename, merge, split and drop classes (recorded migrations).",
    no_args_is_help=True,
)


def _mapped(value: Any) -> str:
    """A class map value as a person reads it (a bare class name, unquoted)."""
    from winnow.services.schema import describe_target

    if isinstance(value, str):
        return value
    return "(dropped)" if value is None else describe_target(value)


def _counts(labels: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in labels.items()) or "(no labels)"


def _same(before: dict[str, int], after: dict[str, int]) -> str:
    return " (the same classes: boxes or attributes changed)" if before == after else ""


def _print_class_map(class_map: dict[str, Any], indent: str = "  ") -> None:
    renamed = {k: v for k, v in class_map.items() if v != k}
    out.print(f"{indent}class map: {len(class_map)} base classes" + (f", {len(renamed)} mapped:" if renamed else ", all under their base names"))
    for base, value in renamed.items():
        out.print(f"{indent}  {base} -> {_mapped(value)}")


def _print_fork(info: dict[str, Any]) -> None:
    out.print(f"{info['workspace']}/{info['project']} is a fork of {info['base_workspace']}/{info['base_ref']}")
    out.print(f"  base version: {info['base_version']}")
    latest = info["latest_base_version_number"]
    if info["behind"]:
        out.print(f"  behind: the base is at v{latest} (winnow project rebase {info['project']} to follow)")
    else:
        out.print("  up to date with the base's latest version")
    out.print(f"  adopted images: {info['adopted']}")
    _print_class_map(info["class_map"])
    out.print(f"  created: {info['created_at']}" + (f", last rebased: {info['rebased_at']}" if info["rebased_at"] else ""))


# ----------------------------------------------------------------------------------- project


def project_fork(
    base: Annotated[str, typer.Argument(help="BASE@VERSION (vN, a name, an id prefix or latest); BASE alone: its latest.")],
    customer: Annotated[str, typer.Argument(help="Name of the new customer project.")],
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace of the new project.")] = DEFAULT_WORKSPACE,
    base_workspace: Annotated[str, typer.Option("--base-workspace", help="Workspace of the base project.")] = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Create CUSTOMER as a fork of a base version (inherited by reference: nothing is copied).

    The customer project inherits the base version's images, labels and classes, and adds its
    own on top; its versions name the inherited images base/<name>.
    """
    from winnow.services.forks import fork_project
    from winnow.services.versions import parse_ref

    with _errors(as_json):
        base_name, ref = parse_ref(base)
        info = fork_project(_store(), base_name, ref, customer, workspace=workspace, base_workspace=base_workspace)
    doc = info.as_dict()
    if as_json:
        _emit_json(doc)
        return
    out.print(f"forked {doc['base_workspace']}/{doc['base_ref']} as {doc['workspace']}/{doc['project']} (nothing copied)")
    _print_fork(doc)


def project_rebase(
    customer: Annotated[str, typer.Argument(help="The customer project (a fork).")],
    base: Annotated[
        str | None, typer.Argument(help="BASE@VERSION or VERSION of the fork's base (default: its latest).")
    ] = None,
    theirs: Annotated[
        bool, typer.Option("--theirs", help="On a conflict take the base's labels (default: keep the customer's).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Move CUSTOMER onto a newer version of its base, with a report of changes and conflicts.

    A conflict is an adopted image whose labels both the base and the customer changed: the
    customer's labels are kept unless --theirs. Adopted images only the base changed follow it.
    """
    from winnow.errors import InvalidInputError
    from winnow.services.forks import rebase, show_fork
    from winnow.services.versions import parse_ref

    with _errors(as_json):
        store = _store()
        ref = None
        if base is not None:
            name, ref = parse_ref(base) if "@" in base else (None, base)
            if name is not None:
                expected = show_fork(store, customer, workspace=workspace).base_project
                if name != expected:
                    raise InvalidInputError(f"{customer!r} is a fork of {expected!r}, not of {name!r}; give {expected}@VERSION")
        report = rebase(store, customer, ref, workspace=workspace, theirs=theirs, dry_run=dry_run)
    doc = report.as_dict()
    if as_json:
        _emit_json(doc)
        return
    _print_rebase(doc)


def _print_rebase(r: dict[str, Any]) -> None:
    verb = "would rebase" if r["dry_run"] else "rebased"
    out.print(f"{verb} {r['project']} from {r['base_project']}@v{r['from_number']} to v{r['to_number']}"
              f" ({r['to_version'][:12]}); conflicts resolved as {r['strategy']}")
    bc = r["base_changes"]
    ann = bc["annotations"]
    out.print("base changes:")
    out.print(f"  images: +{bc['images_added']} -{bc['images_removed']}, {bc['images_replaced']} replaced, {bc['moved']} moved between splits")
    out.print(f"  annotations: +{ann['added']} -{ann['removed']} ~{ann['changed']}")
    if bc["classes_added"] or bc["classes_removed"]:
        out.print(f"  classes: +{', '.join(bc['classes_added']) or '-'} -{', '.join(bc['classes_removed']) or '-'}")
    if r["schema_notes"]:
        out.print("schema:")
        for note in r["schema_notes"]:
            out.print(f"  {note}")
    _print_class_map(r["class_map"], indent="")
    if r["followed"]:
        out.print(f"followed the base on {len(r['followed'])} adopted images (only the base changed them):")
        for name in r["followed"][:20]:
            out.print(f"  {name}")
        if len(r["followed"]) > 20:
            out.print(f"  ... {len(r['followed']) - 20} more (--json lists all)")
    if r["conflicts"]:
        out.print(f"{len(r['conflicts'])} conflicts (adopted images whose labels both the base and the customer changed):")
        for c in r["conflicts"]:
            out.print(f"  {c['image']} (kept {c['kept']})")
            out.print(f"    base before: {_counts(c['base_before'])}")
            out.print(f"    base after:  {_counts(c['base_after'])}" + _same(c["base_before"], c["base_after"]))
            out.print(f"    customer:    {_counts(c['customer'])}" + _same(c["base_before"], c["customer"]))
        if r["strategy"] == "ours":
            out.print("kept the customer's labels; `--theirs` takes the base's")
    else:
        out.print("no conflicts")
    if r["removed_in_base"]:
        out.print(f"{len(r['removed_in_base'])} adopted images are no longer in the base (kept as the customer's own): "
                  + ", ".join(r["removed_in_base"][:10]))
    if r["dry_run"]:
        out.print("dry run: nothing changed")


def project_base(customer: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """A fork's base version, whether it is behind, its class map and adopted images."""
    from winnow.services.forks import show_fork

    with _errors(as_json):
        info = show_fork(_store(), customer, workspace=workspace)
    if as_json:
        _emit_json(info.as_dict())
    else:
        _print_fork(info.as_dict())


def project_adopt(
    customer: Annotated[str, typer.Argument(help="The customer project (a fork).")],
    names: Annotated[list[str], typer.Argument(help="Inherited images to copy (their base name, with or without base/).")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Copy inherited images into CUSTOMER to correct their labels (undo: `winnow undo`).

    Only rows are copied; the bytes stay shared with the base.
    """
    from winnow.services.forks import adopt_images

    with _errors(as_json):
        result = adopt_images(_store(), customer, names, workspace=workspace)
    if as_json:
        _emit_json(result)
        return
    out.print(f"adopted {len(result['adopted'])} images into {customer}"
              + (f"; undo with: winnow undo {customer}" if result["change_id"] else ""))
    for name in result["adopted"][:20]:
        out.print(f"  {name}")
    if result["already_adopted"]:
        out.print(f"already adopted: {', '.join(result['already_adopted'][:10])}")


def register_project_commands(project_app: typer.Typer) -> None:
    """Add ``fork``, ``rebase``, ``base`` and ``adopt`` to the ``winnow project`` group."""
    project_app.command("fork")(project_fork)
    project_app.command("rebase")(project_rebase)
    project_app.command("base")(project_base)
    project_app.command("adopt")(project_adopt)


# ----------------------------------------------------------------------------------- class


def _print_migration(doc: dict[str, Any]) -> None:
    p = doc["params"]
    what = {
        "add": lambda: f"added class {p['name']!r}",
        "rename": lambda: f"renamed {p['old']!r} to {p['new']!r}",
        "merge": lambda: f"merged {', '.join(map(repr, p['sources']))} into {p['into']!r}",
        "split": lambda: f"split {p['source']!r} into {', '.join(map(repr, p['into']))}"
        + (f" by {p['by']!r}" if p.get("by") else "") + f" (default {p['default']!r})",
        "drop": lambda: f"dropped the inherited class {p['base_class']!r}",
    }[doc["op"]]()
    out.print(f"migration #{doc['seq']} of {doc['project']}: {what}")
    out.print(f"  own annotations changed: {doc['annotations']}" + (
        f"; inherited classes remapped: {doc['inherited_classes']} (applied to the next version)" if doc["inherited_classes"] else ""))
    out.print(f"  classes: {', '.join(doc['classes'])}")


def _migrated(as_json: bool, run) -> None:
    with _errors(as_json):
        migration = run(_store())
    doc = migration.as_dict()
    if as_json:
        _emit_json(doc)
    else:
        _print_migration(doc)


@class_app.command("list")
def class_list(project: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """The project's classes, a fork's class map and the migration history."""
    from winnow.services.schema import show_schema

    with _errors(as_json):
        schema = show_schema(_store(), project, workspace=workspace)
    doc = schema.as_dict()
    if as_json:
        _emit_json(doc)
        return
    out.print(f"{doc['project']}: {len(doc['classes'])} classes (schema at migration #{doc['seq']})")
    out.print("  " + (", ".join(doc["classes"]) or "(none)"))
    if doc["class_map"] is not None:
        table = Table("base class", "here", box=None, pad_edge=False)
        for base, value in doc["class_map"].items():
            table.add_row(base, _mapped(value))
        out.print("class map (inherited classes):")
        out.print(table)
    if doc["migrations"]:
        table = Table("#", "op", "params", "annotations", "when", "by", box=None, pad_edge=False)
        for mig in doc["migrations"]:
            params = ", ".join(f"{k}={v}" for k, v in mig["params"].items() if v not in (None, 0))
            table.add_row(str(mig["seq"]), mig["op"], params, str(mig["annotations"]), mig["created_at"], mig["created_by"] or "")
        out.print("migrations:")
        out.print(table)


@class_app.command("add")
def class_add(project: str, name: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Add a class NAME (no annotations change)."""
    from winnow.services.schema import add_class

    _migrated(as_json, lambda store: add_class(store, project, name, workspace=workspace))


@class_app.command("rename")
def class_rename(project: str, old: str, new: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Rename class OLD to NEW (in a fork the inherited annotations follow too)."""
    from winnow.services.schema import rename_class

    _migrated(as_json, lambda store: rename_class(store, project, old, new, workspace=workspace))


@class_app.command("merge")
def class_merge(
    project: str,
    sources: Annotated[list[str], typer.Argument(help="Classes to merge.")],
    into: Annotated[str, typer.Option("--into", help="The class they become (an existing one or a new one).")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Merge the SOURCES classes into one class."""
    from winnow.services.schema import merge_classes

    _migrated(as_json, lambda store: merge_classes(store, project, sources, into, workspace=workspace))


@class_app.command("split")
def class_split(
    project: str,
    source: Annotated[str, typer.Argument(help="The class to split.")],
    into: Annotated[str, typer.Option("--into", help="The new classes, comma-separated (at least two, not in use).")],
    by: Annotated[str, typer.Option("--by", help="Annotation attribute whose value names each annotation's class.")],
    default: Annotated[
        str | None, typer.Option("--default", help="Class of annotations whose attribute names none of them (default: the first).")
    ] = None,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Split SOURCE into several classes by an annotation attribute."""
    from winnow.services.schema import split_class

    targets = [t.strip() for t in into.split(",") if t.strip()]
    _migrated(as_json, lambda store: split_class(store, project, source, targets, by=by, default=default, workspace=workspace))


@class_app.command("drop")
def class_drop(
    project: str,
    base_class: Annotated[str, typer.Argument(help="A base class (its name in the base) the fork stops inheriting.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """In a fork: leave the inherited annotations of a base class out of new versions."""
    from winnow.services.schema import drop_inherited_class

    _migrated(as_json, lambda store: drop_inherited_class(store, project, base_class, workspace=workspace))

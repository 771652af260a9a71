"""``winnow version create|list|show|diff``: immutable dataset versions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from winnow.cli._common import JsonOpt, WorkspaceOpt, _emit_json, _errors, _progress, _store, out
from winnow.config import DEFAULT_WORKSPACE

version_app = typer.Typer(help="Create, list, show and compare immutable dataset versions.", no_args_is_help=True)


def _print_summary(s) -> None:
    state = "created" if s.created else "version"
    out.print(f"{state} {s.ref} (v{s.number}{', ' + s.name if s.name else ''}) of {s.project}")
    out.print(f"  id: {s.version}")
    out.print(f"  parent: {s.parent[:12] if s.parent else '-'}")
    out.print(f"  images: {s.counts['images']}, annotations: {s.counts['annotations']}")
    table = Table("split", "images", "annotations", *s.classes, box=None, pad_edge=False)
    for split, c in s.counts["splits"].items():
        table.add_row(split, str(c["images"]), str(c["annotations"]), *(str(c["classes"].get(k, 0)) for k in s.classes))
    out.print(table)
    pre = ", ".join(step["op"] for step in s.recipe["preprocess"]) or "-"
    aug = s.recipe["augment"]
    aug_text = f"{aug['outputs']} per train image: " + ", ".join(op["op"] for op in aug["ops"]) if aug.get("outputs") else "-"
    out.print(f"  preprocess: {pre}")
    out.print(f"  augment: {aug_text}")
    sp = s.splitting
    out.print(
        f"  kept together: {sp.get('duplicate_groups', 0)} duplicate groups ({sp.get('duplicate_images', 0)} images)"
        + "".join(f", {v} values of {k[len('groups_by_'):]}" for k, v in sp.items() if k.startswith("groups_by_"))
    )
    if sp.get("moved"):
        out.print(f"  moved to keep groups in one split: {len(sp['moved'])} images ({', '.join(sp['moved'][:5])}{' ...' if len(sp['moved']) > 5 else ''})")
    if s.lineage:
        out.print(f"  changes since parent: {len(s.lineage)}")
        for c in s.lineage:
            out.print(f"    #{c['change']} {c['kind']}: {c['description']}")


@version_app.command("create")
def version_create(
    project: str,
    split: Annotated[
        str | None, typer.Option("--split", help="Ratios for images without a split, e.g. train=0.7,valid=0.2,test=0.1.")
    ] = None,
    resplit: Annotated[bool, typer.Option("--resplit", help="Ignore existing splits and split every image again.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the split and the augmentations.")] = 0,
    group_by: Annotated[
        list[str] | None, typer.Option("--group-by", help="Metadata key whose values stay in one split (repeatable).")
    ] = None,
    preprocess: Annotated[
        str | None, typer.Option("--preprocess", help="Steps, e.g. 'auto-orient,resize=640x640:fit' (docs/versions.md).")
    ] = None,
    augment: Annotated[
        str | None, typer.Option("--augment", help="Train augmentations, e.g. 'outputs=3,flip=h,rotate=15'.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name to address the version by.")] = None,
    no_near_duplicates: Annotated[
        bool, typer.Option("--no-near-duplicates", help="Keep only exact duplicates together (skip the pixel pass).")
    ] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot PROJECT as an immutable version (the same inputs give the same version id)."""
    from winnow.services.versions import create_version

    keys = [k for value in (group_by or []) for k in value.split(",")]
    with _errors(as_json), _progress("grouping duplicates", not as_json) as progress:
        summary = create_version(
            _store(),
            project,
            workspace=workspace,
            split=split,
            resplit=resplit,
            seed=seed,
            group_by=keys,
            preprocess=preprocess,
            augment=augment,
            name=name,
            near_duplicates=not no_near_duplicates,
            progress=progress,
        )
    if as_json:
        _emit_json(summary.as_dict())
    else:
        _print_summary(summary)


@version_app.command("list")
def version_list(project: str, workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """The versions of PROJECT, oldest first."""
    from winnow.services.versions import list_versions

    with _errors(as_json):
        rows = list_versions(_store(), project, workspace=workspace)
    if as_json:
        _emit_json([r.as_dict() for r in rows])
        return
    table = Table("v", "id", "name", "created", "images", *("train", "valid", "test"), "parent", box=None, pad_edge=False)
    for r in rows:
        splits = r.counts["splits"]
        table.add_row(
            str(r.number), r.version[:12], r.name or "", r.created_at, str(r.counts["images"]),
            *(str(splits.get(s, {}).get("images", 0)) for s in ("train", "valid", "test")),
            (r.parent or "")[:12],
        )
    out.print(table)


@version_app.command("show")
def version_show(
    ref: Annotated[str, typer.Argument(help="PROJECT@VERSION (id prefix, vN, name or latest), or PROJECT for the latest.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Counts per split and class, the recipe, the parent and the changes since it."""
    from winnow.services.versions import parse_ref, show_version

    with _errors(as_json):
        project, version = parse_ref(ref)
        summary = show_version(_store(), project, version, workspace=workspace)
    if as_json:
        _emit_json(summary.as_dict())
    else:
        _print_summary(summary)


@version_app.command("diff")
def version_diff(
    a: Annotated[str, typer.Argument(help="PROJECT@VERSION before.")],
    b: Annotated[str, typer.Argument(help="PROJECT@VERSION after.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    as_json: JsonOpt = False,
) -> None:
    """Images added, removed and moved; annotations changed by class; class balance before/after."""
    from winnow.services.versions import diff_versions, parse_ref

    with _errors(as_json):
        d = diff_versions(_store(), parse_ref(a), parse_ref(b), workspace=workspace)
    if as_json:
        _emit_json(d.as_dict())
        return
    out.print(f"{d.a} -> {d.b}" + (": identical" if d.empty else ""))
    out.print(f"  images: +{len(d.images_added)} -{len(d.images_removed)}, {len(d.images_replaced)} replaced, {len(d.moved)} moved between splits")
    for mv in d.moved[:20]:
        out.print(f"    {mv['image']}: {mv['from']} -> {mv['to']}")
    ann = d.annotations
    out.print(f"  annotations: +{ann['added']} -{ann['removed']} ~{ann['changed']}")
    for c in d.changes[:50]:
        before, after = c["before"], c["after"]
        if c["change"] == "changed":
            out.print(f"    {c['image']}: {before['label']} {before['bbox']} -> {after['label']} {after['bbox']}")
        else:
            one = before or after
            out.print(f"    {c['image']}: {c['change']} {one['label']} {one['bbox']}")
    if len(d.changes) > 50:
        out.print(f"    ... {len(d.changes) - 50} more (--json lists all)")
    table = Table("class", "before", "after", "delta", box=None, pad_edge=False)
    for cls, v in d.class_balance.items():
        table.add_row(cls, str(v["a"]), str(v["b"]), f"{v['delta']:+d}")
    out.print(table)
    for key, v in d.recipe.items():
        out.print(f"  recipe {key}: {v['a']} -> {v['b']}")

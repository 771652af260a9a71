"""Classification folders: ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``.

The layout torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory`` read, and
what Roboflow exports as "folder structure". Every image gets one image-level
:class:`~winnow.core.types.Annotation` (a label, no geometry) named after its class folder.

Names (see ``docs/formats/folders.md``): a record's ``name`` is the image's path relative to its
split folder (or to the root without splits), so it starts with the class folder:
``train/cat/01.jpg`` -> ``cat/01.jpg``, split ``train``. Names are unique within a split even
when two classes hold a ``01.jpg``. The writer puts a record under its label's folder and drops
a leading folder of its name that is a class (the class folder of an earlier read), so names
read from this format come back unchanged, and a name without one (``01.jpg``) gains it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from winnow.core.types import SPLIT_ALIASES, UNLABELED_TAG, Annotation, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.formats.base import (
    record_path_problems,
    IMAGE_EXTENSIONS,
    Format,
    ImageWriter,
    find_images,
    is_inside,
    register,
    relname,
    safe_relpath,
    write_image,
)
from winnow.media import InvalidImageError, probe_file

#: Folder names that mean a split, and winnow's split for each.

#: Files whose presence means the folder holds a richer format than bare class folders.
ANNOTATION_EXTENSIONS = frozenset({".json", ".xml", ".txt", ".csv", ".yaml", ".yml"})

_DETECT_CONFIDENCE = 0.5
_DETECT_SCAN_LIMIT = 2000


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ClassFolder:
    """One ``<class>`` folder, in a split folder or at the root (``base``)."""

    path: Path
    label: str
    split: str | None
    base: Path


def _subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _loose_images(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def split_of(folder: Path) -> str | None:
    """The split a top-level folder stands for, or ``None`` when it is a class folder.

    A folder is a split when it is named ``train``/``valid``/``val``/``test`` (any case) and
    holds subfolders; a ``test`` folder holding images directly is the class ``test``.
    """
    split = SPLIT_ALIASES.get(folder.name.casefold())
    return split if split is not None and _subfolders(folder) else None


def scan_layout(root: Path) -> tuple[list[ClassFolder], list[tuple[Path, str | None, Path]]]:
    """The class folders under ``root`` and the images that sit outside any class folder.

    Stray images are ``(image, split, base)`` with ``base`` the folder their name is relative to.
    """
    classes: list[ClassFolder] = []
    strays: list[tuple[Path, str | None, Path]] = [(p, None, root) for p in _loose_images(root)]
    for top in _subfolders(root):
        split = split_of(top)
        if split is None:
            classes.append(ClassFolder(top, top.name, None, root))
            continue
        classes += [ClassFolder(sub, sub.name, split, top) for sub in _subfolders(top)]
        strays += [(p, split, top) for p in _loose_images(top)]
    return classes, strays


def _probe(image: Path, name: str, root: Path, problems: Problems) -> tuple[int, int] | None:
    """The displayed ``(width, height)`` of ``image``; ``None`` (and an error) when unreadable."""
    if image.is_symlink() and not is_inside(image, root):
        problems.error(image, "refused: a link to a file outside the dataset folder", record=name)
        return None
    try:
        info = probe_file(image)
    except InvalidImageError as exc:
        problems.error(image, f"{exc}; image skipped", record=name)
        return None
    except OSError as exc:
        problems.error(image, f"cannot read the image ({exc.strerror or exc}); image skipped", record=name)
        return None
    return info.width, info.height


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Placement:
    """Where one record goes (``path`` relative to the destination) and under which class."""

    record: ImageRecord
    label: str
    path: PurePosixPath


def image_label(record: ImageRecord) -> str | None:
    """The record's one image-level class, ``None`` when it has none or several.

    Only annotations without geometry count; the same label twice is still one class.
    """
    labels = {a.label for a in record.annotations if a.kind == "label"}
    return next(iter(labels)) if len(labels) == 1 else None


def check_class_name(name: str) -> str | None:
    """Why ``name`` cannot be a folder name, or ``None`` when it can."""
    if not name or name != name.strip():
        return "empty or padded with spaces"
    if any(c in name for c in "/\\\x00") or name in (".", ".."):
        return "contains a path separator or is . / .."
    if name.startswith("."):
        return "starts with a dot (hidden folder, skipped by readers)"
    if len(name.encode("utf-8")) > 255:
        return "longer than 255 bytes"
    return None


def _validate(dataset: Dataset, classes: Sequence[str]) -> None:
    """Raise :class:`InvalidInputError` for everything the layout cannot hold, before writing."""
    bad: list[str] = []
    folded: dict[str, str] = {}
    for name in classes:
        why = check_class_name(name)
        if why is not None:
            bad.append(f"class {name!r}: {why}")
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            bad.append(f"classes {other!r} and {name!r} differ only in case (one folder on some systems)")
    for rec in dataset.images:
        bad += record_path_problems(rec)
        labels = sorted({a.label for a in rec.annotations if a.kind == "label"})
        if len(labels) != 1:
            what = "no class label" if not labels else f"{len(labels)} class labels ({', '.join(labels)})"
            bad.append(f"{rec.name}: {what}; each image must have exactly one")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... ({len(bad)} in all)" if len(bad) > 10 else "")
        raise InvalidInputError(
            f"cannot write classification folders: {shown}. Label or drop unlabeled images, "
            "and split multi-label ones, before exporting"
        )


def plan_layout(records: Sequence[ImageRecord], classes: Sequence[str]) -> list[Placement]:
    """Give every record ``[<split>/]<label>/<name>``, one path per record.

    A leading folder of the name that is a class is the class folder of an earlier read and is
    replaced by the label. Paths that clash (case-folded) keep the first record; the others
    become ``<stem>__<k><suffix>``.
    """
    class_set = set(classes)
    natural: list[PurePosixPath] = []
    labels: list[str] = []
    for rec in records:
        label = image_label(rec)
        parts = safe_relpath(rec.name).parts
        if len(parts) > 1 and parts[0] in class_set:
            parts = parts[1:]
        base = PurePosixPath(rec.split) if rec.split else PurePosixPath()
        natural.append(base / label / PurePosixPath(*parts))
        labels.append(label)
    taken = {p.as_posix().casefold() for p in natural}
    used: set[str] = set()
    out = []
    for rec, label, start in zip(records, labels, natural):
        path, k, key = start, 0, start.as_posix().casefold()
        while (key in used) if k == 0 else (key in taken):
            k += 1
            path = start.with_name(f"{start.stem}__{k}{start.suffix}")
            key = path.as_posix().casefold()
        used.add(key)
        taken.add(key)
        out.append(Placement(rec, label, path))
    return out



# --------------------------------------------------------------------------- detection


def _walk_limited(root: Path, limit: int) -> Iterable[tuple[Path, list[str], list[str]]]:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), dirnames, filenames
        count += len(filenames) + len(dirnames)
        if count > limit:
            return


def folders_with_images(path: Path) -> list[Path] | None:
    """The folders under ``path`` (itself included) that hold image files, in its first 2,000
    entries; ``None`` when ``path`` is not a folder or holds an annotation file (a richer format)."""
    if not path.is_dir():
        return None
    found = []
    for dirpath, _, filenames in _walk_limited(path, _DETECT_SCAN_LIMIT):
        suffixes = {Path(f).suffix.lower() for f in filenames if not f.startswith(".")}
        if suffixes & ANNOTATION_EXTENSIONS:
            return None
        if suffixes & IMAGE_EXTENSIONS:
            found.append(dirpath)
    return found


# --------------------------------------------------------------------------- the format


@register
class ClassificationFoldersFormat(Format):
    """One folder per class (optionally inside ``train``/``valid``/``test`` folders)."""

    name = "folders"
    description = "Classification: root/<class>/<image> or root/<split>/<class>/<image>"
    tasks = frozenset({Task.CLASSIFY})

    def detect(self, path: Path) -> float:
        """0.5 for a folder whose class folders hold images and no annotation files, else 0.

        Kept moderate so that any richer format that recognises the folder wins.
        """
        found = folders_with_images(Path(path))
        return _DETECT_CONFIDENCE if found and any(d != Path(path) for d in found) else 0.0

    def read(self, path: Path, problems: Problems) -> Dataset:
        """Read class folders; see the module docstring for layouts and names.

        ``classes`` are the class folder names, sorted (``ImageFolder``'s order), including empty
        ones. Unreadable images are skipped (error). Images outside any class folder are kept with
        no label and the tag ``unlabeled`` (one warning each).
        """
        root = Path(path)
        if not root.is_dir():
            raise FormatError(root, "not a folder")
        root = root.resolve()
        folders, strays = scan_layout(root)
        found = [(image, f.split, f.base, f.label) for f in folders for image in find_images(f.path)]
        found += [(image, split, base, None) for image, split, base in strays]
        records: list[ImageRecord] = []
        used: set[str] = set()
        for image, split, base, label in found:
            name = relname(image, base)
            if name in used:  # the same class/file in two splits: names stay unique
                full = relname(image, root)
                problems.warning(image, f"image name {name!r} is used twice; this one is named {full!r}", record=full)
                name = full
            size = _probe(image, name, root, problems)
            if size is None:
                continue
            used.add(name)
            record = ImageRecord(name, *size, split=split, file=image)
            if label is not None:
                record.annotations.append(Annotation(label=label))
            else:
                problems.warning(image, f"image is not in a class folder; kept unlabeled (tag {UNLABELED_TAG!r})", record=name)
                record.tags.append(UNLABELED_TAG)
            records.append(record)
        classes = sorted({f.label for f in folders})
        return Dataset(classes=classes, images=records, task=Task.CLASSIFY)

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        """Write ``[<split>/]<class>/<image>``; every class gets a folder in every split used.

        Raises :class:`InvalidInputError` before writing anything when a record does not have
        exactly one image-level class, or a class or record name cannot be a path (see
        :func:`check_class_name`).
        """
        classes = dataset.class_order(frozenset({"label"}))
        _validate(dataset, classes)
        placements = plan_layout(dataset.images, classes)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        bases = {PurePosixPath(p.record.split) if p.record.split else PurePosixPath() for p in placements}
        for base in bases or {PurePosixPath()}:
            for cls in classes:
                dest.joinpath(*base.parts, cls).mkdir(parents=True, exist_ok=True)
        for placement in placements:
            write_image(images, placement.record, dest, placement.path.as_posix())

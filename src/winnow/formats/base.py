"""The shape every dataset format has, and the registry that finds them by name.

A format is one module with one :class:`Format` subclass decorated with :func:`register`. It turns
files into a :class:`~winnow.core.types.Dataset` (``read``) and back (``write``) and says how sure
it is that a path is written in it (``detect``). Readers never raise on a bad *record*: they skip
it and add a :class:`~winnow.core.types.Problem` naming the file and the record. They raise
:class:`~winnow.errors.FormatError` only when the file as a whole cannot be read.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import ClassVar

from winnow.core.types import SPLITS, Dataset, ImageRecord, Problems, Task
from winnow.errors import InvalidInputError, UnsafeInputError

#: Writes the bytes of ``record`` to ``path`` (the directory already exists).
ImageWriter = Callable[[ImageRecord, Path], None]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

_REGISTRY: dict[str, type[Format]] = {}


class Format(ABC):
    """One dataset format: a reader, a writer and a detector.

    Subclasses set ``name`` (the ``--format`` value), ``description`` and ``tasks`` (what the
    format can hold without loss).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[frozenset[Task]] = frozenset({Task.DETECT})

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "name", None) and not getattr(cls, "__abstractmethods__", None):
            raise TypeError(f"format class {cls.__name__} must set a `name`")

    @abstractmethod
    def detect(self, path: Path) -> float:
        """Confidence in ``[0, 1]`` that ``path`` (a file or a directory) is in this format."""

    @abstractmethod
    def read(self, path: Path, problems: Problems) -> Dataset:
        """Read ``path`` into a dataset; every record has ``file`` set to its image on disk.

        Bad records are skipped and reported in ``problems``; an unreadable file raises
        :class:`~winnow.errors.FormatError`.
        """

    @abstractmethod
    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        """Write ``dataset`` (annotations and image files) under the directory ``dest``."""


def register(cls: type[Format]) -> type[Format]:
    """Class decorator: make a format available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"format {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the modules registers them; cheap, and only done when a format is asked for.
    from winnow.formats import (  # noqa: F401
        classification_folders,
        coco,
        createml,
        csv_boxes,
        images,
        labelme,
        voc,
        yolo,
    )


def available() -> list[str]:
    """Names of every registered format, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_format(name: str) -> Format:
    """The format registered as ``name``; a clear error lists the known ones otherwise."""
    _load_builtin()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise InvalidInputError(f"unknown format {name!r}; known formats: {', '.join(sorted(_REGISTRY))}") from None


def detect_format(path: Path) -> Format:
    """The format that is most confident about ``path``; an error if none is."""
    _load_builtin()
    scored = sorted(((cls().detect(path), name) for name, cls in _REGISTRY.items()), reverse=True)
    if not scored or scored[0][0] <= 0:
        raise InvalidInputError(
            f"{path}: could not tell the dataset format; pass --format (one of {', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[scored[0][1]]()


# --------------------------------------------------------------------------- helpers for formats


def safe_relpath(name: str) -> PurePosixPath:
    """``name`` as a relative POSIX path that cannot leave its root.

    Refuses absolute paths, drive letters, ``..`` parts, NUL bytes and empty names.
    """
    if not name or "\x00" in name:
        raise UnsafeInputError(f"invalid file name {name!r}")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeInputError(f"absolute path not allowed: {name!r}")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafeInputError(f"path escapes its root: {name!r}")
    return PurePosixPath(*parts)


def record_path_problems(record: ImageRecord) -> list[str]:
    """Why a writer cannot place ``record`` in a folder layout: an unsafe name, no image
    extension, or a split other than train/valid/test (empty when it can)."""
    try:
        path = safe_relpath(record.name)
    except UnsafeInputError as exc:
        return [f"{record.name!r}: {exc}"]
    bad = []
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        bad.append(f"{record.name}: no image extension ({', '.join(sorted(IMAGE_EXTENSIONS))}); readers find images by it")
    if record.split is not None and record.split not in SPLITS:
        bad.append(f"{record.name}: split {record.split!r} is not one of {', '.join(SPLITS)}")
    return bad


def safe_join(root: Path, name: str) -> Path:
    """``root / name`` after :func:`safe_relpath`; the result is guaranteed inside ``root``."""
    return Path(root, *safe_relpath(name).parts)


def write_image(images: ImageWriter, record: ImageRecord, dest: Path, name: str | None = None) -> Path:
    """Write ``record``'s bytes to ``dest / (name or record.name)``, creating folders."""
    target = safe_join(dest, name or record.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    images(record, target)
    return target


def copy_from_file(record: ImageRecord, path: Path) -> None:
    """An :data:`ImageWriter` for datasets read from disk: copy ``record.file``."""
    if record.file is None:
        raise InvalidInputError(f"{record.name}: no image file to copy")
    shutil.copyfile(record.file, path)


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root`` (symlinks resolved)."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except OSError:
        return False


class InsideChecker:
    """:func:`is_inside` for many paths under one ``root``, resolving the root and each folder once.

    A path whose last part is not a symbolic link resolves to its folder's resolved path plus
    its name, so only folders are resolved (and cached); a path that is a link, or ends in
    ``.``/``..``, goes through :func:`is_inside` itself. Same answers, one ``lstat`` per path
    instead of one per path component.
    """

    def __init__(self, root: Path | str):
        self._root = root
        self._prefix: str | None = None
        self._folders: dict[str, str] = {}

    def __call__(self, path: Path | str) -> bool:
        text = os.fspath(path)
        folder, name = os.path.split(text)
        try:
            if name in ("", ".", "..") or os.path.islink(text):
                return is_inside(Path(text), Path(self._root))
            if self._prefix is None:
                self._prefix = os.path.join(str(Path(self._root).resolve()), "")
            real_folder = self._folders.get(folder)
            if real_folder is None:
                real_folder = self._folders[folder] = os.path.join(str(Path(folder).resolve()), "")
        except OSError:
            return False
        real = real_folder + name
        return real.startswith(self._prefix) or real == self._prefix[:-1]


def find_images(root: Path) -> Iterable[Path]:
    """Every image file under ``root`` (by extension, case-insensitive), sorted.

    Hidden files and folders are skipped and folder symlinks are not followed. File symlinks
    are returned as they are: a reader refuses the ones that point outside the dataset
    (:func:`is_inside`) with a problem naming them, rather than dropping them silently.
    """
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in sorted(filenames):
            if Path(fn).suffix.lower() in IMAGE_EXTENSIONS and not fn.startswith("."):
                yield Path(dirpath, fn)


def relname(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with POSIX separators (the record ``name``)."""
    return Path(path).relative_to(root).as_posix()

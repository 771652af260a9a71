"""Unlabelled images: every image file under a folder, at any depth, with no annotations.

What a scrape, a camera dump or a folder a customer sends looks like, and what FiftyOne's
``ImageDirectory`` and Datumaro's ``image_dir`` read. Each image becomes a record with no
annotations and the tag :data:`~winnow.core.types.UNLABELED_TAG` ("not labelled yet", as opposed
to "labelled, nothing there").

Names (see ``docs/formats/images.md``): the image's path relative to the folder, sub-folders
kept (``cams/north/0001.jpg``), so two ``0001.jpg`` in two folders stay two images. A top-level
``train``/``valid``/``val``/``test`` folder gives its images that split and their names are
relative to it (the shared rule of :mod:`winnow.formats._common`). Unreadable images and links
out of the folder are skipped with an error naming them; hidden files and non-image files are
ignored. Sub-folders are *not* classes here: for class folders use ``--format folders``, which
detection prefers when sub-folders hold images.

The writer puts each image at ``[<split>/]<name>``; it refuses a dataset with annotations
(they would be lost) before writing anything.
"""

from __future__ import annotations

from pathlib import Path

from winnow.core.types import UNLABELED_TAG, Dataset, ImageRecord, Problems, Task
from winnow.errors import FormatError, InvalidInputError
from winnow.formats._common import MAX_LISTED, RecordCollector, split_dir
from winnow.formats.base import Format, ImageWriter, find_images, record_path_problems, register, write_image
from winnow.formats.classification_folders import folders_with_images

#: Below ``folders`` (0.5) and every labelled format: a bare folder of images is the last guess.
_DETECT_CONFIDENCE = 0.3


@register
class ImagesFormat(Format):
    """A folder of image files and nothing else: unlabelled images."""

    name = "images"
    description = "Unlabelled images: every image under a folder (sub-folders kept in the names)"
    tasks: frozenset[Task] = frozenset()  # holds no labels of any task (its writer refuses them)

    def detect(self, path: Path) -> float:
        """0.3 for a folder that holds images and no annotation file (in its first 2,000 entries)."""
        return _DETECT_CONFIDENCE if folders_with_images(Path(path)) else 0.0

    def read(self, path: Path, problems: Problems) -> Dataset:
        """Every image under ``path`` as an unlabelled record (see the module docstring)."""
        root = Path(path)
        if not root.is_dir():
            raise FormatError(root, "not a folder (the images format reads a folder of image files)")
        root = root.resolve()
        collector = RecordCollector(root, problems)
        for image in find_images(root):
            collector.add(ImageRecord(name=image.name, tags=[UNLABELED_TAG]), image, image)
        dataset = collector.dataset(task=None)
        dataset.task = None
        return dataset

    def write(self, dataset: Dataset, dest: Path, images: ImageWriter) -> None:
        """Write each image at ``[<split>/]<name>``; refuses annotated records or unsafe names first."""
        bad: list[str] = []
        labelled = [r.name for r in dataset.images if r.annotations]
        if labelled:
            shown = ", ".join(labelled[:MAX_LISTED]) + (", ..." if len(labelled) > MAX_LISTED else "")
            bad.append(
                f"{len(labelled)} image(s) have annotations the images format cannot hold ({shown}); "
                "export with a labelled format (coco, yolo, voc, ...) instead"
            )
        for rec in dataset.images:
            bad += record_path_problems(rec)
        if bad:
            shown = "; ".join(bad[:10]) + (f"; ... ({len(bad)} in all)" if len(bad) > 10 else "")
            raise InvalidInputError(f"cannot write images: {shown}")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for rec in dataset.images:
            write_image(images, rec, split_dir(dest, rec.split))

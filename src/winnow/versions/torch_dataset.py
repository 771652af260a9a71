"""A version streamed into PyTorch: ``VersionDataset`` reads a version's outputs (materialised on
first use) straight from the blob store, without exporting files.

Each item is ``(image, target)``: ``image`` a ``uint8`` tensor ``C x H x W`` (RGB), or whatever
``transform(image, target)`` returns. ``target`` follows torchvision's detection convention:
``boxes`` (``float32 N x 4``, ``xyxy`` pixels), ``labels`` (``int64``: the class's index in
``dataset.classes`` plus ``label_offset``, 1 by default because torchvision's detection models
keep 0 for the background), ``image_id``, ``name``, and for segmentation ``masks``
(``uint8 N x H x W``). For classification ``target`` is the class index (no offset).

``torch`` is only needed here (the ``train`` extra); the rest of winnow does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from winnow.config import DEFAULT_WORKSPACE
from winnow.core.types import ImageRecord, Task


def _masks(rec: ImageRecord) -> np.ndarray:
    from pycocotools import mask as mask_utils

    h, w = rec.height, rec.width
    out = np.zeros((len(rec.annotations), rec.height, rec.width), np.uint8)
    for i, a in enumerate(rec.annotations):
        if a.rle is not None:
            rle = dict(a.rle)
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode()
            out[i] = mask_utils.decode(rle)[:h, :w]
        elif a.polygon:
            rles = mask_utils.frPyObjects([list(map(float, p)) for p in a.polygon if len(p) >= 6], rec.height, rec.width)
            if rles:
                out[i] = mask_utils.decode(mask_utils.merge(rles))
    return out


class VersionDataset(Dataset):
    """The outputs of one split (or all) of a version, as a map-style PyTorch dataset."""

    def __init__(
        self,
        store: Any,
        project: str,
        ref: str | None = None,
        *,
        split: str | None = "train",
        workspace: str = DEFAULT_WORKSPACE,
        transform: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]] | None = None,
        label_offset: int = 1,
    ):
        from winnow.services.versions import materialize_version

        loaded, records = materialize_version(store, project, ref, workspace=workspace)
        self.version = loaded.version_id
        self.classes = list(loaded.manifest.classes)
        self.task = Task(loaded.manifest.task)
        self.records = [r for r in records if split is None or r.split == split]
        self.transform = transform
        self.label_offset = label_offset
        self._index = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, rec: ImageRecord) -> torch.Tensor:
        from winnow.media import decode

        pixels = np.asarray(decode(rec.file.read_bytes(), rec.name, "RGB"))
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        rec = self.records[i]
        image = self._image(rec)
        if self.task is Task.CLASSIFY:
            target: Any = self._index[rec.annotations[0].label] if rec.annotations else -1
        else:
            boxed = [a for a in rec.annotations if a.bbox is not None]
            target = {
                "boxes": torch.tensor([a.bbox for a in boxed], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([self._index[a.label] + self.label_offset for a in boxed], dtype=torch.int64),
                "iscrowd": torch.tensor([bool(a.iscrowd) for a in boxed], dtype=torch.uint8),
                "image_id": i,
                "name": rec.name,
            }
            if self.task is Task.SEGMENT:
                only = ImageRecord(name=rec.name, width=rec.width, height=rec.height, annotations=boxed)
                target["masks"] = torch.from_numpy(_masks(only))
        if self.transform is not None:
            return self.transform(image, target)
        return image, target

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor, Any]]) -> tuple[list[torch.Tensor], list[Any]]:
        """For detection ``DataLoader``\\ s: images of different sizes stay a list."""
        images, targets = zip(*batch, strict=True)
        return list(images), list(targets)

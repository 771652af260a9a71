"""A version streamed into a PyTorch DataLoader without exporting files."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_versions import synthetic_store
from winnow.services.versions import create_version, materialize_version

torch = pytest.importorskip("torch")


def test_a_version_streams_into_a_dataloader_with_its_boxes_and_class_indices(tmp_path):
    from torch.utils.data import DataLoader

    from winnow.versions.torch_dataset import VersionDataset

    store = synthetic_store(tmp_path, n=12)
    v = create_version(store, "shapes", resplit=True, seed=4, augment="outputs=1,flip=h")
    ds = VersionDataset(store, "shapes", v.version, split="train")
    _, outputs = materialize_version(store, "shapes", v.version)
    train = [r for r in outputs if r.split == "train"]
    assert len(ds) == len(train) == 2 * v.counts["splits"]["train"]["images"]

    loader = DataLoader(ds, batch_size=4, collate_fn=VersionDataset.collate)
    seen = 0
    for images, targets in loader:
        for image, target in zip(images, targets, strict=True):
            rec = train[target["image_id"]]
            assert image.dtype == torch.uint8 and tuple(image.shape) == (3, rec.height, rec.width)
            np.testing.assert_allclose(target["boxes"].numpy(), np.array([a.bbox for a in rec.annotations]).reshape(-1, 4), atol=1e-4)
            expected = [ds.classes.index(a.label) + 1 for a in rec.annotations]
            assert target["labels"].tolist() == expected, "labels are class indices + 1 (0 is background)"
            seen += 1
    assert seen == len(ds)


def test_segmentation_targets_carry_masks_that_fill_the_polygons(tmp_path):
    from winnow.services.ingest import import_dataset
    from winnow.services.projects import create_project
    from winnow.store.db import Store
    from winnow.synthetic import generate
    from winnow.core.types import Task
    from winnow.formats import get_format
    from winnow.versions.torch_dataset import VersionDataset

    src = tmp_path / "src"
    ds = generate(src, 4, seed=2, task=Task.SEGMENT)
    get_format("coco").write(ds, src / "coco", lambda rec, path: path.write_bytes(rec.file.read_bytes()))
    store = Store.open(tmp_path / "home")
    create_project(store, "seg", "segment")
    import_dataset(store, "seg", src / "coco", format="coco")
    v = create_version(store, "seg", split="train=1")
    data = VersionDataset(store, "seg", v.version, split=None)
    image, target = data[0]
    masks = target["masks"]
    assert masks.shape == (len(target["boxes"]), image.shape[1], image.shape[2])
    for mask, box in zip(masks, target["boxes"], strict=True):
        ys, xs = np.nonzero(mask.numpy())
        assert len(xs) > 20
        x1, y1, x2, y2 = box.tolist()
        assert x1 - 1 <= xs.min() and xs.max() <= x2 + 1 and y1 - 1 <= ys.min() and ys.max() <= y2 + 1

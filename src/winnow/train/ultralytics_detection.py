"""Optional ultralytics YOLO detectors: ``ultralytics:yolov8n`` and ``ultralytics:yolo11n`` (any size
``n s m l x`` of those two as ``ultralytics:yolov8s`` ...).

**ultralytics is AGPL-3.0.** It is never installed with winnow; it is the ``agpl`` extra
(``pip install winnow[agpl]``). Whoever installs it and serves these models over a network must
offer the complete corresponding source of the service under the AGPL (or hold an Ultralytics
enterprise licence); winnow itself (Apache-2.0) does not import it unless one of these backends is
used. This module imports no ultralytics at import time: the registry lists these backends
without it, and :meth:`UltralyticsDetector.check_available` refuses them, saying what to install,
when it is missing.

**Untested here**: ultralytics is not installed in winnow's environment, so only the refusal and
the listing are tested; the code follows ultralytics' documented Python API
(``YOLO("yolov8n.yaml").train(data=..., epochs=..., imgsz=..., device="cpu", pretrained=False)``)
and the raw output of the v8/11 ``Detect`` head (``(N, 4 + K, A)``: ``xywh`` in input pixels,
then sigmoid class scores; no objectness).

How it fits winnow:

* Training uses ultralytics' own trainer (``own_trainer``) on a YOLO export of the version
  (``services.versions.export_version(..., "yolo")``), with its augmentation (mosaic etc.) and
  losses; winnow then evaluates the trained network on the valid split like every other backend.
* Random init only: ultralytics' pretrained ``.pt`` files are whole pickled models (loading one
  runs code), and winnow only loads weights-only or safetensors checkpoints.
* ONNX: winnow exports the trained ``DetectionModel`` itself (TorchScript exporter) up to its
  dense outputs, boxes ``xyxy`` and per-class scores with a zero background column
  (``outputs="dense"``, decode ``per_class``), decoded with numpy at serving time
  (:mod:`winnow.train.decode`) exactly as the PyTorch path here does, so the two engines agree
  and ``winnow predict``/the serving pool need nothing from ultralytics for an ONNX model.
  (ultralytics' own ``export(format="onnx")`` may try to pip-install helpers and its output
  layout changes between releases; the graph is the same network.)
* Input: winnow's plain resize (:func:`~winnow.train.base.to_input`), not ultralytics' letterbox.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from winnow.core.types import Task
from winnow.errors import InvalidInputError, NotFoundError
from winnow.train.base import Backend, Prediction, register, register_family, scale_boxes, to_input

PREFIX = "ultralytics"
LICENCE = "AGPL-3.0 (ultralytics; optional extra `agpl`)"
_ARCH = re.compile(r"^(yolov8|yolo11)[nsmlx]$")
LISTED = {"yolov8n": "YOLOv8-n (ultralytics, AGPL-3.0)", "yolo11n": "YOLO11-n (ultralytics, AGPL-3.0)"}
#: Serving decode, as ultralytics validates (conf 0.001, IoU 0.7, 300 detections).
DECODE = {"mode": "per_class", "score_thresh": 0.001, "nms_thresh": 0.7, "topk_candidates": 300, "detections_per_img": 300}
PREDICT_BATCH = 16


def missing_message(name: str) -> str:
    return (
        f"model {name!r} needs the ultralytics package, which is not installed: `pip install winnow[agpl]`. "
        "ultralytics is AGPL-3.0: if you serve models trained with it over a network, the AGPL requires you to offer "
        "the complete source of that service to its users (or to hold an Ultralytics enterprise licence). "
        "winnow's own backends (e.g. ssdlite) have no such condition."
    )


def import_ultralytics() -> Any:
    """Import ultralytics offline: ``YOLO_OFFLINE=true`` (no telemetry, update checks or downloads)
    and ``YOLO_AUTOINSTALL=false`` (no pip installs), unless already set. They only take effect
    when ultralytics is first imported, so nothing else should import it before winnow does."""
    if importlib.util.find_spec("ultralytics") is None:
        raise InvalidInputError(missing_message(f"{PREFIX}:*"))
    os.environ.setdefault("YOLO_OFFLINE", "true")  # read once, when ultralytics.utils is first imported
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    import ultralytics

    return ultralytics


def _dense(model: Any, size: int) -> Any:
    """The export/predict wrapper: ``(N, 3, S, S)`` in ``[0, 1]`` -> boxes ``(N, A, 4)`` ``xyxy`` in
    input pixels (clipped), scores ``(N, A, 1 + K)`` (column 0 a zero background, as torchvision's
    labels). Defined on use: this module imports neither torch nor ultralytics at import time."""
    import torch
    from torch import nn

    class Dense(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.net(images)
            y = (out[0] if isinstance(out, (tuple, list)) else out).transpose(1, 2)  # (N, A, 4 + K)
            xy, wh, cls = y[..., :2], y[..., 2:4], y[..., 4:]
            boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=-1).clamp(0, size)
            return boxes, torch.cat([torch.zeros_like(cls[..., :1]), cls], dim=-1)

    return Dense(model).eval()


def _decoded(boxes: np.ndarray, scores: np.ndarray, size: int, im: Image.Image) -> Prediction:
    from winnow.train.decode import decode_dense

    b, s, labels = decode_dense(boxes, scores, DECODE)
    keep = labels > 0
    return Prediction(boxes=scale_boxes(b, size, im.width, im.height)[keep], scores=s[keep], class_ids=labels[keep] - 1)


class UltralyticsDetector(Backend):
    """An ultralytics YOLO detector (v8/11 heads). See the module docstring: AGPL, untested here."""

    task = Task.DETECT
    licence = LICENCE
    own_trainer = True
    default_image_size = 640
    default_lr = 1e-3
    default_optimizer = "adamw"
    default_batch_size = 16

    def __init__(self, arch: str, description: str = ""):
        self.arch = arch
        self.name = f"{PREFIX}:{arch}"
        self.description = description or f"{arch} (ultralytics, AGPL-3.0)"

    def check_available(self) -> None:
        if importlib.util.find_spec("ultralytics") is None:  # finds the package without importing it
            raise InvalidInputError(missing_message(self.name))

    def missing_weights_message(self) -> str:
        return (
            f"{self.name!r} trains from random init only: ultralytics' pretrained .pt files are pickled models "
            "(loading one runs code) and winnow loads weights-only checkpoints; use --pretrained no"
        )

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"family": PREFIX, "arch": self.arch, "optional_extra": "agpl"}

    # -- building

    def build(self, num_classes: int, image_size: int, *, width: float = 1.0) -> Any:
        """ultralytics' ``DetectionModel`` from its ``ARCH.yaml`` with ``num_classes`` classes (random init)."""
        self.check_options(image_size, width)
        import_ultralytics()
        from ultralytics.nn.tasks import DetectionModel

        return DetectionModel(cfg=f"{self.arch}.yaml", nc=num_classes, verbose=False)

    # -- training: ultralytics' own trainer

    def train_step(self, model: Any, images: list[Any], targets: list[Any]) -> tuple[Any, dict[str, float]]:
        raise InvalidInputError(f"{self.name!r} trains with ultralytics' own trainer (fit_version), not step by step")

    def fit_version(
        self, model: Any, *, export: Callable[[str, Path], Any], config: Any, image_size: int, work: Path
    ) -> list[dict[str, Any]]:
        """Export the version as YOLO, train ``YOLO(ARCH.yaml)`` on it on the CPU, copy the trained
        weights into ``model``; return one log entry per epoch (from ultralytics' ``results.csv``)."""
        import yaml

        import_ultralytics()
        from ultralytics import YOLO

        data = work / "data"
        export("yolo", data)
        doc = yaml.safe_load((data / "data.yaml").read_text(encoding="utf-8"))
        doc["path"] = str(data.resolve())  # ultralytics otherwise resolves relative paths against its datasets dir
        doc.setdefault("val", doc.get("test") or doc["train"])  # it needs a val entry; winnow evaluates on its own
        (data / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")

        yolo = YOLO(f"{self.arch}.yaml")
        yolo.train(
            data=str(data / "data.yaml"), epochs=config.epochs, imgsz=image_size, batch=config.batch_size, lr0=config.lr,
            optimizer={"adamw": "AdamW", "sgd": "SGD"}[config.optimizer], weight_decay=config.weight_decay, seed=config.seed,
            deterministic=True, device="cpu", pretrained=False, workers=0, amp=False, plots=False, project=str(work),
            name="run", exist_ok=True, verbose=False,
        )
        model.load_state_dict(yolo.model.float().state_dict())  # the best checkpoint, loaded back by train()
        return _results(work / "run" / "results.csv")

    # -- predicting (PyTorch): the same dense outputs and numpy decode as the ONNX file

    def predict_arrays(self, model: Any, images: Sequence[Image.Image], image_size: int) -> list[Prediction]:
        import torch

        wrapper = _dense(model, image_size)
        out: list[Prediction] = []
        with torch.no_grad():
            for i in range(0, len(images), PREDICT_BATCH):
                chunk = images[i : i + PREDICT_BATCH]
                boxes, scores = wrapper(torch.from_numpy(np.stack([to_input(im, image_size) for im in chunk])))
                out.extend(_decoded(b.numpy(), s.numpy(), image_size, im) for b, s, im in zip(boxes, scores, chunk, strict=True))
        return out

    # -- serving

    def export_onnx(self, model: Any, path: Path, image_size: int) -> dict[str, Any]:
        import torch

        from winnow.train import onnx_io

        wrapper = _dense(model, image_size)
        onnx_io.export_torchscript(wrapper, (torch.rand(1, 3, image_size, image_size),), path, ["images"], ["boxes", "scores"])
        info = {"backend": self.name, "task": self.task.value, "image_size": image_size, "exporter": "torchscript",
                "outputs": "dense", "decode": dict(DECODE)}
        return onnx_io.finish(path, info)

    def onnx_predict_arrays(self, session: Any, images: Sequence[Image.Image]) -> list[Prediction]:
        from winnow.train import onnx_io

        size = int(onnx_io.read_info(session)["image_size"])
        name = session.get_inputs()[0].name
        out = []
        for im in images:
            boxes, scores = session.run(None, {name: to_input(im, size)[None]})
            out.append(_decoded(boxes[0], scores[0], size, im))
        return out


def _results(path: Path) -> list[dict[str, Any]]:
    """ultralytics' per-epoch ``results.csv`` as winnow log entries (``loss`` = the sum of the train losses)."""
    if not path.is_file():
        return []
    entries = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v.strip() for k, v in row.items() if k}
            losses = {k.split("/", 1)[1]: float(v) for k, v in row.items() if k.startswith("train/")}
            entries.append({"epoch": int(float(row.get("epoch", len(entries) + 1))), "loss": sum(losses.values()), "losses": losses})
    return entries


def ultralytics_backend(arch: str) -> UltralyticsDetector:
    if not _ARCH.match(arch):
        raise NotFoundError(f"no ultralytics model {arch!r}; winnow knows yolov8[nsmlx] and yolo11[nsmlx]")
    return UltralyticsDetector(arch)


for _arch, _description in LISTED.items():
    register(UltralyticsDetector(_arch, _description))
register_family(PREFIX, ultralytics_backend)

"""torchvision detectors: ``ssdlite`` (the default), ``fasterrcnn_mobilenet``, ``retinanet`` and
``fcos`` (the last two on ResNet-50 FPN: heavy on a CPU).

Every model is built with ``weights=None, weights_backbone=None`` (never a download); COCO
weights are loaded afterwards, only from the local torch hub cache (see
:meth:`winnow.train.base.Backend.cached_weights`), minus the class-specific layers.

ONNX: the single-stage detectors export their dense outputs (decoded boxes + per-class scores,
``outputs="dense"``) with the torch.export-based exporter and decode them with numpy at serving
time (:mod:`winnow.train.decode`); Faster R-CNN exports whole (``outputs="detections"``) with the
TorchScript exporter.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from winnow.core.types import Task
from winnow.train import onnx_io
from winnow.train.base import (
    Backend,
    Prediction,
    WeightsSource,
    register,
    scale_boxes,
    to_input,
)
from winnow.train.decode import decode_dense

#: Images per forward pass when predicting.
PREDICT_BATCH = 16


def _source(enum_member: Any, description: str, part: str = "", strip: str = "") -> WeightsSource:
    url = enum_member.url
    return WeightsSource(file=url.rsplit("/", 1)[1], url=url, description=description, part=part, strip=strip)


def clean_target(target: dict[str, Any], width: int, height: int, size: int) -> dict[str, torch.Tensor]:
    """A ``VersionDataset`` detection target scaled to the ``size x size`` input; boxes that end
    up empty are dropped (torchvision refuses them)."""
    sx, sy = size / width, size / height
    boxes = target["boxes"].reshape(-1, 4).to(torch.float32) * torch.tensor([sx, sy, sx, sy])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, size)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, size)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out = {"boxes": boxes[keep], "labels": target["labels"].to(torch.int64)[keep]}
    if "masks" in target:
        masks = target["masks"][keep]
        if len(masks):
            masks = nn.functional.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0]
        out["masks"] = masks.reshape(-1, size, size).to(torch.uint8)
    return out


def _predictions(out: dict[str, torch.Tensor], size: int, width: int, height: int) -> Prediction:
    """torchvision's output on the ``S x S`` input -> a :class:`Prediction` on the original image."""
    labels = out["labels"].numpy().astype(np.int64)
    keep = labels > 0  # network label 0 is the background
    return Prediction(
        boxes=scale_boxes(out["boxes"].numpy(), size, width, height)[keep],
        scores=out["scores"].numpy().astype(np.float32)[keep],
        class_ids=labels[keep] - 1,
    )


class _Dense(nn.Module):
    """Export wrapper for single-stage detectors: normalise, backbone, head, decode the boxes of
    every anchor and activate the scores. ``(N, 3, S, S)`` -> boxes ``(N, A, 4)`` (input pixels,
    clipped), scores ``(N, A, C)``."""

    def __init__(self, model: nn.Module, size: int, kind: str):
        super().__init__()
        from torchvision.models.detection.image_list import ImageList

        self.model = model
        self.kind = kind
        self.size = size
        self.register_buffer("mean", torch.tensor(model.transform.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(model.transform.image_std).view(1, 3, 1, 1))
        with torch.no_grad():
            x = torch.zeros(1, 3, size, size)
            feats = self._features(x)
            anchors = model.anchor_generator(ImageList(x, [(size, size)]), feats)[0]
            head = model.head(feats)
        self.register_buffer("anchors", anchors)
        hw = [f.shape[-2] * f.shape[-1] for f in feats]
        per_location = head["cls_logits"].shape[1] // sum(hw)
        self.levels = [n * per_location for n in hw]

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model.backbone(x)
        if isinstance(feats, torch.Tensor):
            feats = OrderedDict([("0", feats)])
        return list(feats.values())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images - self.mean) / self.std
        out = self.model.head(self._features(x))
        reg = out["bbox_regression"]
        n, a = reg.shape[0], reg.shape[1]
        anchors = self.anchors.unsqueeze(0).expand(n, a, 4).reshape(-1, 4)
        coder = self.model.box_coder
        flat = reg.reshape(-1, 4)
        boxes = coder.decode(flat, anchors) if self.kind == "fcos" else coder.decode_single(flat, anchors)
        boxes = boxes.reshape(n, a, 4).clamp(0, self.size)
        logits = out["cls_logits"]
        if self.kind == "ssd":
            scores = torch.softmax(logits, dim=-1)
        elif self.kind == "retinanet":
            scores = torch.sigmoid(logits)
        else:
            scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(out["bbox_ctrness"]))
        return boxes, scores


class _Whole(nn.Module):
    """Export wrapper for two-stage detectors: one ``3 x S x S`` image -> boxes, labels, scores (, masks)."""

    def __init__(self, model: nn.Module, masks: bool = False):
        super().__init__()
        self.model = model
        self.masks = masks

    def forward(self, image: torch.Tensor):
        out = self.model([image])[0]
        if self.masks:
            return out["boxes"], out["labels"], out["scores"], out["masks"]
        return out["boxes"], out["labels"], out["scores"]


class TorchvisionDetector(Backend):
    """A torchvision detection model behind the :class:`Backend` interface.

    ``kind``: ``ssd`` | ``retinanet`` | ``fcos`` (single stage, dense ONNX outputs) or ``rcnn``.
    """

    task = Task.DETECT
    default_lr = 1e-3
    default_optimizer = "adamw"
    default_batch_size = 8

    def __init__(
        self,
        name: str,
        builder: Callable[..., nn.Module],
        kind: str,
        *,
        description: str,
        sources: Callable[[], list[WeightsSource]],
        default_image_size: int = 320,
        heavy: bool = False,
        widths: bool = False,
    ):
        self.name = name
        self._builder = builder
        self.kind = kind
        self.description = description
        self._sources = sources
        self.default_image_size = default_image_size
        self.heavy = heavy
        self.widths = widths

    def weights_sources(self) -> list[WeightsSource]:
        return self._sources()

    def build(self, num_classes: int, image_size: int, *, width: float = 1.0) -> nn.Module:
        self.check_options(image_size, width)
        return self._builder(num_classes + 1, image_size, width)

    # -- training

    def prepare(self, image: Any, target: Any, image_size: int) -> tuple[torch.Tensor, Any]:
        h, w = int(image.shape[1]), int(image.shape[2])
        pixels = np.asarray(image).transpose(1, 2, 0)
        return torch.from_numpy(to_input(pixels, image_size)), clean_target(target, w, h, image_size)

    def train_step(self, model: nn.Module, images: list[torch.Tensor], targets: list[Any]) -> tuple[torch.Tensor, dict[str, float]]:
        model.train()
        losses = model(images, targets)
        total = sum(losses.values())
        return total, {k: float(v.detach()) for k, v in losses.items()}

    # -- predicting

    def _outputs_to_prediction(self, out: dict[str, torch.Tensor], size: int, im: Image.Image) -> Prediction:
        return _predictions(out, size, im.width, im.height)

    def predict_arrays(self, model: nn.Module, images: Sequence[Image.Image], image_size: int) -> list[Prediction]:
        model.eval()
        out: list[Prediction] = []
        with torch.no_grad():
            for i in range(0, len(images), PREDICT_BATCH):
                chunk = images[i : i + PREDICT_BATCH]
                results = model([torch.from_numpy(to_input(im, image_size)) for im in chunk])
                out.extend(self._outputs_to_prediction(r, image_size, im) for r, im in zip(results, chunk, strict=True))
        return out

    # -- serving

    def _decode_cfg(self, model: nn.Module, wrapper: _Dense) -> dict[str, Any]:
        if self.kind == "ssd":
            return {
                "mode": "per_class",
                "score_thresh": float(model.score_thresh),
                "nms_thresh": float(model.nms_thresh),
                "topk_candidates": int(model.topk_candidates),
                "detections_per_img": int(model.detections_per_img),
            }
        return {
            "mode": "per_level",
            "levels": [int(v) for v in wrapper.levels],
            "score_thresh": float(model.score_thresh),
            "nms_thresh": float(model.nms_thresh),
            "topk_candidates": int(model.topk_candidates),
            "detections_per_img": int(model.detections_per_img),
        }

    def export_onnx(self, model: nn.Module, path: Path, image_size: int) -> dict[str, Any]:
        model.eval()
        info: dict[str, Any] = {"backend": self.name, "task": self.task.value, "image_size": image_size}
        if self.kind == "rcnn":
            example = (torch.rand(3, image_size, image_size),)
            onnx_io.export_torchscript(_Whole(model), example, path, ["image"], ["boxes", "labels", "scores"])
            info |= {"exporter": "torchscript", "outputs": "detections"}
        else:
            wrapper = _Dense(model, image_size, self.kind).eval()
            onnx_io.export_dynamo(wrapper, torch.rand(1, 3, image_size, image_size), path)
            info |= {"exporter": "dynamo", "outputs": "dense", "decode": self._decode_cfg(model, wrapper)}
        return onnx_io.finish(path, info)

    def onnx_predict_arrays(self, session: Any, images: Sequence[Image.Image]) -> list[Prediction]:
        info = onnx_io.read_info(session)
        size = int(info["image_size"])
        name = session.get_inputs()[0].name
        out: list[Prediction] = []
        if info["outputs"] == "detections":
            for im in images:
                boxes, labels, scores = session.run(None, {name: to_input(im, size)})[:3]
                out.append(_predictions({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "scores": torch.from_numpy(scores)}, size, im.width, im.height))
            return out
        for im in images:
            boxes, scores = session.run(None, {name: to_input(im, size)[None]})
            db, ds, dl = decode_dense(boxes[0], scores[0], info["decode"])
            keep = dl > 0
            out.append(Prediction(boxes=scale_boxes(db, size, im.width, im.height)[keep], scores=ds[keep], class_ids=dl[keep] - 1))
        return out


# ----------------------------------------------------------------------------- builders


def _ssdlite(num_classes: int, size: int, width: float) -> nn.Module:
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes, width_mult=width)
    t = model.transform
    model.transform = GeneralizedRCNNTransform(size, size, t.image_mean, t.image_std, size_divisible=1, fixed_size=(size, size))
    return model


def _fasterrcnn_mobilenet(num_classes: int, size: int, width: float) -> nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, min_size=size, max_size=size
    )


def _retinanet(num_classes: int, size: int, width: float) -> nn.Module:
    from torchvision.models.detection import retinanet_resnet50_fpn

    return retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size, max_size=size)


def _fcos(num_classes: int, size: int, width: float) -> nn.Module:
    from torchvision.models.detection import fcos_resnet50_fpn

    return fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size, max_size=size)


def _ssdlite_sources() -> list[WeightsSource]:
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

    return [_source(SSDLite320_MobileNet_V3_Large_Weights.COCO_V1, "COCO (torchvision), all but the classifier")]


def _fasterrcnn_sources() -> list[WeightsSource]:
    from torchvision.models import MobileNet_V3_Large_Weights
    from torchvision.models.detection import (
        FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    )

    return [
        _source(FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1, "COCO (torchvision), all but the box predictor"),
        _source(MobileNet_V3_Large_Weights.IMAGENET1K_V1, "ImageNet backbone", part="backbone.body", strip="features."),
    ]


def _retinanet_sources() -> list[WeightsSource]:
    from torchvision.models.detection import RetinaNet_ResNet50_FPN_Weights

    return [_source(RetinaNet_ResNet50_FPN_Weights.COCO_V1, "COCO (torchvision), all but the classifier")]


def _fcos_sources() -> list[WeightsSource]:
    from torchvision.models.detection import FCOS_ResNet50_FPN_Weights

    return [_source(FCOS_ResNet50_FPN_Weights.COCO_V1, "COCO (torchvision), all but the classifier")]


register(
    TorchvisionDetector(
        "ssdlite",
        _ssdlite,
        "ssd",
        description="SSDlite, MobileNetV3-Large backbone (ssdlite320_mobilenet_v3_large); the default detector",
        sources=_ssdlite_sources,
        widths=True,
    )
)
register(
    TorchvisionDetector(
        "fasterrcnn_mobilenet",
        _fasterrcnn_mobilenet,
        "rcnn",
        description="Faster R-CNN, MobileNetV3-Large FPN (fasterrcnn_mobilenet_v3_large_320_fpn)",
        sources=_fasterrcnn_sources,
    )
)
register(
    TorchvisionDetector(
        "retinanet",
        _retinanet,
        "retinanet",
        description="RetinaNet, ResNet-50 FPN (retinanet_resnet50_fpn); heavy on a CPU",
        sources=_retinanet_sources,
        heavy=True,
    )
)
register(
    TorchvisionDetector(
        "fcos",
        _fcos,
        "fcos",
        description="FCOS, ResNet-50 FPN (fcos_resnet50_fpn); heavy on a CPU",
        sources=_fcos_sources,
        heavy=True,
    )
)

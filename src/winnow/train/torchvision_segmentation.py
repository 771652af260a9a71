"""torchvision instance segmentation: ``maskrcnn_mobilenet`` (the default: Mask R-CNN on a
MobileNetV3-Large FPN, as torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn``) and ``maskrcnn``
(ResNet-50 FPN: heavy on a CPU).

Masks come out of the network as ``S x S`` probabilities; :func:`masks_to_image` resizes them to
the original image (bilinear) and thresholds at 0.5, for PyTorch and ONNX predictions alike.
ONNX: the whole network with the TorchScript exporter (``outputs="detections"``), verified
against PyTorch when the model is registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from winnow.core.types import Task
from winnow.train import onnx_io
from winnow.train.base import Prediction, WeightsSource, register, to_input
from winnow.train.torchvision_detection import (
    TorchvisionDetector,
    _predictions,
    _source,
    _Whole,
)

#: A mask pixel belongs to the object when its probability is above this.
MASK_THRESHOLD = 0.5


def masks_to_image(probs: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(N, S, S)`` mask probabilities on the input -> ``(N, height, width)`` bool on the image."""
    out = np.zeros((len(probs), height, width), bool)
    for i, p in enumerate(probs):
        resized = Image.fromarray(np.asarray(p, np.float32), "F").resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(resized) > MASK_THRESHOLD
    return out


def _with_masks(out: dict[str, Any], size: int, im: Image.Image) -> Prediction:
    pred = _predictions(out, size, im.width, im.height)
    labels = np.asarray(out["labels"]).astype(np.int64)
    probs = np.asarray(out["masks"], np.float32).reshape(len(labels), size, size)[labels > 0]
    pred.masks = masks_to_image(probs, im.width, im.height)
    return pred


class TorchvisionSegmenter(TorchvisionDetector):
    task = Task.SEGMENT

    def _outputs_to_prediction(self, out: dict[str, torch.Tensor], size: int, im: Image.Image) -> Prediction:
        return _with_masks({k: v.numpy() if k == "masks" else v for k, v in out.items()}, size, im)

    def export_onnx(self, model: nn.Module, path: Path, image_size: int) -> dict[str, Any]:
        model.eval()
        example = (torch.rand(3, image_size, image_size),)
        onnx_io.export_torchscript(_Whole(model, masks=True), example, path, ["image"], ["boxes", "labels", "scores", "masks"])
        info = {"backend": self.name, "task": self.task.value, "image_size": image_size, "exporter": "torchscript", "outputs": "detections"}
        return onnx_io.finish(path, info)

    def onnx_predict_arrays(self, session: Any, images: Sequence[Image.Image]) -> list[Prediction]:
        size = int(onnx_io.read_info(session)["image_size"])
        name = session.get_inputs()[0].name
        out = []
        for im in images:
            boxes, labels, scores, masks = session.run(None, {name: to_input(im, size)})
            out.append(
                _with_masks(
                    {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "scores": torch.from_numpy(scores), "masks": masks},
                    size,
                    im,
                )
            )
        return out


def _maskrcnn(num_classes: int, size: int, width: float) -> nn.Module:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size, max_size=size)


def _maskrcnn_mobilenet(num_classes: int, size: int, width: float) -> nn.Module:
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    backbone = mobilenet_backbone(
        backbone_name="mobilenet_v3_large", weights=None, fpn=True, norm_layer=nn.BatchNorm2d, trainable_layers=6
    )
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    return MaskRCNN(
        backbone,
        num_classes,
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes)),
        min_size=size,
        max_size=size,
        rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_test=150,
        rpn_score_thresh=0.05,
    )


def _maskrcnn_sources() -> list[WeightsSource]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return [_source(MaskRCNN_ResNet50_FPN_Weights.COCO_V1, "COCO (torchvision), all but the box and mask predictors")]


def _maskrcnn_mobilenet_sources() -> list[WeightsSource]:
    from torchvision.models import MobileNet_V3_Large_Weights

    return [_source(MobileNet_V3_Large_Weights.IMAGENET1K_V1, "ImageNet backbone", part="backbone.body", strip="features.")]


register(
    TorchvisionSegmenter(
        "maskrcnn_mobilenet",
        _maskrcnn_mobilenet,
        "rcnn",
        description="Mask R-CNN, MobileNetV3-Large FPN backbone; the default segmenter",
        sources=_maskrcnn_mobilenet_sources,
    )
)
register(
    TorchvisionSegmenter(
        "maskrcnn",
        _maskrcnn,
        "rcnn",
        description="Mask R-CNN, ResNet-50 FPN (maskrcnn_resnet50_fpn); heavy on a CPU",
        sources=_maskrcnn_sources,
        heavy=True,
    )
)

"""torchvision classifiers: ``mobilenet_v3_small`` (the default) and ``resnet18``; the shared
classifier machinery (wrapper, training step, probabilities, ONNX) that :mod:`winnow.train.timm_classification` reuses.

The network is wrapped with its ImageNet normalisation, so training, PyTorch prediction and the
ONNX file all take ``[0, 1]`` RGB input. ONNX: the torch.export-based exporter, the graph ends
with a softmax (``outputs="probabilities"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from winnow.core.types import Task
from winnow.train import onnx_io
from winnow.train.base import Backend, Prediction, WeightsSource, register, to_input

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREDICT_BATCH = 64


class Classifier(nn.Module):
    """``(N, 3, S, S)`` in ``[0, 1]`` -> logits ``(N, K)``; ``net`` is the torchvision (or timm)
    model, ``mean``/``std`` the per-channel normalisation its weights expect."""

    def __init__(self, net: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


class _Probabilities(nn.Module):
    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images), dim=-1)


def _top1(probs: np.ndarray) -> list[Prediction]:
    out = []
    for p in probs:
        c = int(np.argmax(p))
        out.append(Prediction(np.zeros((1, 4), np.float32), np.array([p[c]], np.float32), np.array([c], np.int64)))
    return out


class TorchvisionClassifier(Backend):
    task = Task.CLASSIFY
    default_image_size = 224
    default_lr = 1e-3
    default_optimizer = "adamw"
    default_batch_size = 32

    def __init__(
        self,
        name: str,
        builder: Callable[[int, float], nn.Module],
        *,
        description: str,
        sources: Callable[[], list[WeightsSource]],
        widths: bool = False,
    ):
        self.name = name
        self._builder = builder
        self.description = description
        self._sources = sources
        self.widths = widths

    def weights_sources(self) -> list[WeightsSource]:
        return self._sources()

    def build(self, num_classes: int, image_size: int, *, width: float = 1.0) -> nn.Module:
        self.check_options(image_size, width)
        return Classifier(self._builder(num_classes, width))

    def train_step(self, model: nn.Module, images: list[torch.Tensor], targets: list[Any]) -> tuple[torch.Tensor, dict[str, float]]:
        model.train()
        logits = model(torch.stack(images))
        loss = nn.functional.cross_entropy(logits, torch.as_tensor(targets, dtype=torch.int64))
        return loss, {"loss_classifier": float(loss.detach())}

    def probabilities(self, model: nn.Module, images: Sequence[Image.Image], image_size: int) -> np.ndarray:
        """``(N, K)`` softmax probabilities."""
        model.eval()
        parts = []
        with torch.no_grad():
            for i in range(0, len(images), PREDICT_BATCH):
                x = torch.from_numpy(np.stack([to_input(im, image_size) for im in images[i : i + PREDICT_BATCH]]))
                parts.append(torch.softmax(model(x), dim=-1).numpy())
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def predict_arrays(self, model: nn.Module, images: Sequence[Image.Image], image_size: int) -> list[Prediction]:
        return _top1(self.probabilities(model, images, image_size))

    def export_onnx(self, model: nn.Module, path: Path, image_size: int) -> dict[str, Any]:
        model.eval()
        onnx_io.export_dynamo(_Probabilities(model).eval(), torch.rand(1, 3, image_size, image_size), path)
        info = {"backend": self.name, "task": self.task.value, "image_size": image_size, "exporter": "dynamo", "outputs": "probabilities"}
        return onnx_io.finish(path, info)

    def onnx_probabilities(self, session: Any, images: Sequence[Image.Image]) -> np.ndarray:
        size = int(onnx_io.read_info(session)["image_size"])
        name = session.get_inputs()[0].name
        parts = [session.run(None, {name: to_input(im, size)[None]})[0] for im in images]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def onnx_predict_arrays(self, session: Any, images: Sequence[Image.Image]) -> list[Prediction]:
        return _top1(self.onnx_probabilities(session, images))


def _mobilenet_v3_small(num_classes: int, width: float) -> nn.Module:
    from torchvision.models import mobilenet_v3_small

    return mobilenet_v3_small(weights=None, num_classes=num_classes, width_mult=width)


def _resnet18(num_classes: int, width: float) -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=num_classes)


def _imagenet(enum_member: Any) -> WeightsSource:
    url = enum_member.url
    return WeightsSource(url.rsplit("/", 1)[1], url, "ImageNet (torchvision), all but the classifier", part="net")


def _mobilenet_sources() -> list[WeightsSource]:
    from torchvision.models import MobileNet_V3_Small_Weights

    return [_imagenet(MobileNet_V3_Small_Weights.IMAGENET1K_V1)]


def _resnet18_sources() -> list[WeightsSource]:
    from torchvision.models import ResNet18_Weights

    return [_imagenet(ResNet18_Weights.IMAGENET1K_V1)]


register(
    TorchvisionClassifier(
        "mobilenet_v3_small",
        _mobilenet_v3_small,
        description="MobileNetV3-Small (torchvision); the default classifier",
        sources=_mobilenet_sources,
        widths=True,
    )
)
register(TorchvisionClassifier("resnet18", _resnet18, description="ResNet-18 (torchvision)", sources=_resnet18_sources))

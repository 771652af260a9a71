"""The model backend interface and registry.

A backend is one architecture family behind one small interface (scikit-learn's verbs):
:meth:`Backend.build` a network, :meth:`Backend.train_step` on a batch, :meth:`Backend.predict`
with PyTorch, :meth:`Backend.export_onnx` for serving and :meth:`Backend.onnx_predict` with
onnxruntime. Each backend module registers its instances by name; :func:`get_backend` imports the
built-in modules on first use (they import torch; this module does not).

Conventions shared by every backend:

* A network's input is a batch of images **already resized to** ``image_size x image_size``
  (``float32``, RGB, ``[0, 1]``, ``N x 3 x S x S``) by :func:`to_input`, the one resize used for
  training, PyTorch prediction and ONNX prediction alike; normalisation (mean/std) happens inside
  the network, so the ONNX graph takes the same input.
* ``num_classes`` is the number of the dataset's classes; detection backends add their own
  background class (dataset class ``i`` is network label ``i + 1``).
* Predictions are columns (:class:`Prediction`): ``xyxy`` boxes in **absolute pixels of the
  original image**, scores in ``[0, 1]``, class indices into the version's class list.
* Names: torchvision backends have plain names (``ssdlite``); other families are
  ``family:arch`` (``timm:resnet10t``, ``ultralytics:yolov8n``), a few registered by name and any
  other ``arch`` resolved on demand by the family's factory (:func:`register_family`). A backend
  that needs an optional package refuses in :meth:`Backend.check_available` (ultralytics, AGPL).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from winnow.core.types import Annotation, Source, Task
from winnow.errors import InvalidInputError, NotFoundError

_REGISTRY: dict[str, Backend] = {}
PRETRAINED_CHOICES = ("auto", "yes", "no")
_BUILTIN = (
    "winnow.train.torchvision_detection",
    "winnow.train.torchvision_segmentation",
    "winnow.train.torchvision_classification",
    "winnow.train.timm_classification",  # imports timm only when a timm model is built
    "winnow.train.ultralytics_detection",  # never imports ultralytics (AGPL) unless that backend is used
)
#: ``family:arch`` names resolved on demand (``timm:<any timm model>``): prefix -> factory(arch).
_FAMILIES: dict[str, Callable[[str], Backend]] = {}
_FAMILY_CACHE: dict[str, Backend] = {}


# ----------------------------------------------------------------------------- predictions


@dataclass
class Prediction:
    """One image's predictions, as columns.

    Attributes:
        boxes: ``(N, 4)`` float32 ``xyxy`` in absolute pixels of the original image (classification: zeros).
        scores: ``(N,)`` float32 in ``[0, 1]``, highest first.
        class_ids: ``(N,)`` int64 indices into the model's class list (no background offset).
        masks: ``(N, H, W)`` bool at the original image size (segmentation), else ``None``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, keep: Any) -> Prediction:
        return Prediction(
            self.boxes[keep], self.scores[keep], self.class_ids[keep], None if self.masks is None else self.masks[keep]
        )

    @classmethod
    def empty(cls) -> Prediction:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def to_annotations(self, classes: Sequence[str], task: Task) -> list[Annotation]:
        """``source=model`` annotations with scores: a label (classify), a box (detect), an RLE mask and its box (segment)."""
        out: list[Annotation] = []
        for i in range(len(self)):
            label = classes[int(self.class_ids[i])]
            score = float(self.scores[i])
            if task is Task.CLASSIFY:
                out.append(Annotation(label=label, score=score, source=Source.MODEL))
                continue
            box = tuple(float(v) for v in self.boxes[i])
            rle = None
            if task is Task.SEGMENT and self.masks is not None:
                rle = encode_mask(self.masks[i])
            out.append(Annotation(label=label, bbox=box, rle=rle, score=score, source=Source.MODEL))  # type: ignore[arg-type]
        return out


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A boolean ``H x W`` mask as COCO compressed RLE ``{"size": [h, w], "counts": str}``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


# ----------------------------------------------------------------------------- inputs


def to_input(image: Image.Image | np.ndarray, image_size: int) -> np.ndarray:
    """An RGB image (PIL, or ``H x W x 3`` uint8) as the network's input: ``3 x S x S`` float32 in ``[0, 1]``.

    A plain (aspect-changing) bilinear resize with Pillow: every path (training, PyTorch and ONNX
    prediction) uses this function, so both engines see identical pixels.
    """
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return (np.asarray(im, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def scale_boxes(boxes: np.ndarray, image_size: int, width: int, height: int) -> np.ndarray:
    """Boxes predicted on the ``S x S`` input back to the original ``width x height`` pixels."""
    scale = np.array([width, height, width, height], np.float32) / np.float32(image_size)
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * scale).astype(np.float32)


# ----------------------------------------------------------------------------- pretrained weights


@dataclass(frozen=True)
class WeightsSource:
    """A pretrained checkpoint a backend can start from, as torchvision publishes it.

    Only ever read from the local torch hub cache (``torch.hub.get_dir()/checkpoints/<file>``,
    i.e. ``$TORCH_HOME/hub/checkpoints``); winnow never downloads it.
    """

    file: str
    url: str
    description: str
    part: str = ""  # the sub-module (dotted path) the checkpoint describes; "" for the whole network
    strip: str = ""  # a key prefix to remove first (e.g. "features." for a classifier's backbone)


def hub_checkpoint(file: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / file


def load_matching(module: Any, path: Path, strip: str = "") -> dict[str, Any]:
    """Load the tensors of checkpoint ``path`` whose name and shape match ``module``'s (the rest
    keeps its random init: e.g. a classifier for another number of classes).

    Returns ``{"file", "loaded", "skipped", "total"}`` (tensor counts). Loads with
    ``weights_only=True``: a checkpoint cannot run code.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise InvalidInputError(f"{path}: not a readable PyTorch state dict ({exc})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise InvalidInputError(f"{path}: expected a state dict, got {type(state).__name__}")
    if strip:
        state = {k[len(strip) :]: v for k, v in state.items() if k.startswith(strip)}
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict(matching, strict=False)
    return {"file": path.name, "loaded": len(matching), "skipped": len(state) - len(matching), "total": len(own)}


# ----------------------------------------------------------------------------- the interface


class Backend(ABC):
    """One trainable architecture. Subclasses set the class attributes and the abstract methods.

    ``heavy`` marks networks too big for CPU-only training in reasonable time (ResNet-50 FPN).
    ``width`` (a channel multiplier) is supported where ``widths`` is true: tests and quick
    experiments use a fraction of the channels; pretrained weights need ``width == 1``.
    """

    name: ClassVar[str] = ""
    task: ClassVar[Task]
    description: ClassVar[str] = ""
    licence: ClassVar[str] = "BSD-3-Clause (torchvision)"
    heavy: ClassVar[bool] = False
    widths: ClassVar[bool] = False
    default_image_size: ClassVar[int] = 224
    size_multiple: ClassVar[int] = 32
    default_lr: ClassVar[float] = 1e-3
    default_optimizer: ClassVar[str] = "adamw"
    default_batch_size: ClassVar[int] = 8

    # -- building

    @abstractmethod
    def build(self, num_classes: int, image_size: int, *, width: float = 1.0) -> Any:
        """A randomly initialised ``torch.nn.Module`` for ``num_classes`` dataset classes."""

    def weights_sources(self) -> list[WeightsSource]:
        """Pretrained checkpoints this backend can start from, best first."""
        return []

    def cached_weights(self) -> tuple[WeightsSource, Path] | None:
        """The first of :meth:`weights_sources` present in the local torch hub cache (never downloads)."""
        for source in self.weights_sources():
            path = hub_checkpoint(source.file)
            if path.is_file():
                return source, path
        return None

    def resolve_pretrained(self, choice: str | bool, width: float = 1.0) -> tuple[WeightsSource, Path] | None:
        """The cached checkpoint to start from, or ``None`` for random init.

        ``choice``: ``auto`` (the checkpoint when it is cached and ``width`` is 1), ``yes`` (it
        must be cached), ``no``. Never downloads: a missing file under ``yes`` is an error that
        names where to put it.
        """
        if isinstance(choice, bool):
            choice = "yes" if choice else "no"
        if choice not in PRETRAINED_CHOICES:
            raise InvalidInputError(f"pretrained must be one of {', '.join(PRETRAINED_CHOICES)}, got {choice!r}")
        if choice == "no" or (choice == "auto" and width != 1.0):
            return None
        found = self.cached_weights()
        if choice == "yes":
            if width != 1.0:
                raise InvalidInputError("pretrained weights exist only at width 1; drop --width or use --pretrained no")
            if found is None:
                raise InvalidInputError(self.missing_weights_message())
        return found

    def missing_weights_message(self) -> str:
        """Why ``--pretrained yes`` fails when nothing is cached, and where the file would go."""
        files = ", ".join(str(hub_checkpoint(s.file)) for s in self.weights_sources()) or "(none published)"
        return (
            f"no pretrained weights for {self.name!r} in the local torch cache; winnow never downloads them. "
            f"Put one of these files in place: {files}; or use --pretrained no"
        )

    def load_pretrained(self, model: Any, source: WeightsSource, path: Path) -> dict[str, Any]:
        """Load the matching tensors of a cached checkpoint into ``model`` (see :func:`load_matching`)."""
        target = model
        for attr in filter(None, source.part.split(".")):
            target = getattr(target, attr)
        return load_matching(target, path, source.strip) | {"part": source.part or "model"}

    def class_row_offset(self) -> int | None:
        """How the rows of a class-dependent tensor are laid out, for a fine-tune to another class
        list (``services.training``): a tensor whose first dimension is ``offset + num_classes``
        holds one row per network label, dataset class ``i`` at row ``offset + i`` (``0`` for a
        classifier's last layer, ``1`` after detection's background row). ``None``: no such rows
        (class-dependent tensors are then re-initialised). A backend with another layout overrides it."""
        if self.own_trainer:
            return None
        return 0 if self.task is Task.CLASSIFY else 1

    def check_options(self, image_size: int, width: float) -> None:
        if not isinstance(image_size, int) or image_size < 32 or image_size % self.size_multiple:
            raise InvalidInputError(
                f"image size for {self.name!r} must be a multiple of {self.size_multiple} and at least 32, got {image_size!r}"
            )
        if width != 1.0 and not self.widths:
            raise InvalidInputError(f"{self.name!r} has no width multiplier; leave width at 1")
        if not 0 < width <= 4:
            raise InvalidInputError(f"width must be in (0, 4], got {width!r}")

    def check_available(self) -> None:
        """Raise :class:`InvalidInputError` (saying what to install) when an optional package this
        backend needs is missing; called by :func:`get_backend`. Must not import that package."""

    # -- training

    #: True for a backend that trains with its own trainer (:meth:`fit_version`) instead of
    #: winnow's loop over :meth:`train_step`.
    own_trainer: ClassVar[bool] = False

    def fit_version(
        self, model: Any, *, export: Callable[[str, Path], Any], config: Any, image_size: int, work: Path
    ) -> list[dict[str, Any]]:
        """Train ``model`` in place with the backend's own trainer (only when :attr:`own_trainer`).

        ``export(format, folder)`` writes the version's outputs in a winnow dataset format
        (e.g. ``"yolo"``); ``config`` is the :class:`~winnow.train.loop.FitConfig`; ``work`` a
        scratch folder. Returns the per-epoch log entries (``epoch``, ``loss``, ...); the caller
        adds the validation metrics to the last one and logs them.
        """
        raise NotImplementedError(f"{self.name!r} trains with winnow's loop (train_step)")

    def prepare(self, image: np.ndarray, target: Any, image_size: int) -> tuple[Any, Any]:
        """A ``VersionDataset`` item (``uint8 3 x H x W`` tensor, its target) as the network's
        input and the target scaled to the ``S x S`` input."""
        import torch

        pixels = np.asarray(image).transpose(1, 2, 0)
        return torch.from_numpy(to_input(pixels, image_size)), target

    @abstractmethod
    def train_step(self, model: Any, images: list[Any], targets: list[Any]) -> tuple[Any, dict[str, float]]:
        """The loss (a scalar tensor to back-propagate) on one batch and its named parts."""

    # -- predicting

    @abstractmethod
    def predict_arrays(self, model: Any, images: Sequence[Image.Image], image_size: int) -> list[Prediction]:
        """PyTorch predictions for decoded RGB images (any size)."""

    def predict(
        self, model: Any, images: Sequence[Image.Image], image_size: int, classes: Sequence[str]
    ) -> list[list[Annotation]]:
        """PyTorch predictions as ``source=model`` annotations with scores."""
        return [p.to_annotations(classes, self.task) for p in self.predict_arrays(model, images, image_size)]

    # -- serving

    @abstractmethod
    def export_onnx(self, model: Any, path: Path, image_size: int) -> dict[str, Any]:
        """Write ``model`` as an ONNX file; return what serving needs to know (stored in the
        file's metadata as ``winnow`` JSON too): exporter, opset, output decoding."""

    @abstractmethod
    def onnx_predict_arrays(self, session: Any, images: Sequence[Image.Image]) -> list[Prediction]:
        """onnxruntime predictions for decoded RGB images (reads its settings from the file's metadata)."""

    def onnx_predict(self, session: Any, images: Sequence[Image.Image], classes: Sequence[str]) -> list[list[Annotation]]:
        return [p.to_annotations(classes, self.task) for p in self.onnx_predict_arrays(session, images)]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task.value,
            "description": self.description,
            "licence": self.licence,
            "heavy": self.heavy,
            "default_image_size": self.default_image_size,
            "pretrained": [s.file for s in self.weights_sources()],
        }


def register(backend: Backend) -> Backend:
    if not backend.name:
        raise TypeError(f"{type(backend).__name__} has no name")
    _REGISTRY[backend.name] = backend
    return backend


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN:
        importlib.import_module(module)


def register_family(prefix: str, factory: Callable[[str], Backend]) -> None:
    """Resolve ``prefix:ARCH`` names not registered by name with ``factory(ARCH)`` (which raises
    :class:`NotFoundError` for an unknown ``ARCH``)."""
    _FAMILIES[prefix] = factory


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``, or a ``family:arch`` one (imports the built-in backends,
    and torch, on first use). Refuses a backend whose optional package is missing."""
    _load_builtins()
    backend = _REGISTRY.get(name) or _FAMILY_CACHE.get(name)
    if backend is None:
        prefix, sep, arch = name.partition(":")
        if not (sep and arch and prefix in _FAMILIES):
            families = "".join(f"; or {p}:ARCH" for p in sorted(_FAMILIES))
            raise NotFoundError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}{families}")
        backend = _FAMILY_CACHE.setdefault(name, _FAMILIES[prefix](arch))
    backend.check_available()
    return backend


def list_backends(task: Task | str | None = None) -> list[Backend]:
    _load_builtins()
    wanted = None if task is None else Task(task)
    return [b for _, b in sorted(_REGISTRY.items()) if wanted is None or b.task is wanted]


#: The backend ``winnow train`` uses when ``--model`` is not given, per task.
DEFAULT_BACKEND = {Task.DETECT: "ssdlite", Task.SEGMENT: "maskrcnn_mobilenet", Task.CLASSIFY: "mobilenet_v3_small"}


def threads() -> int:
    """Threads for torch: ``$WINNOW_THREADS`` when set, else every CPU."""
    value = os.environ.get("WINNOW_THREADS", "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            raise InvalidInputError(f"WINNOW_THREADS must be a positive integer, got {value!r}") from None
        if n < 1:
            raise InvalidInputError(f"WINNOW_THREADS must be a positive integer, got {value!r}")
        return n
    return os.cpu_count() or 1


@dataclass
class OnnxInfo:
    """What an exported ONNX file needs at serving time (JSON in its ``winnow`` metadata)."""

    backend: str
    task: str
    image_size: int
    exporter: str
    opset: int
    outputs: str  # "logits" | "dense" (decoded boxes + scores; NMS at serving) | "detections" (NMS inside)
    decode: dict[str, Any] = field(default_factory=dict)

"""timm classifiers: ``timm:ARCH`` for any classification model timm knows (``timm.list_models()``),
e.g. ``timm:resnet10t``, ``timm:mobilenetv3_small_050``, ``timm:efficientnet_b0`` or, with a
pretrained tag, ``timm:resnet18.a1_in1k``. A few small ones are registered by name so that
``list_backends`` shows them; any other ``timm:ARCH`` is resolved on demand
(:func:`winnow.train.base.register_family`).

Everything but building and pretrained weights is the torchvision classifier's
(:class:`~winnow.train.torchvision_classification.TorchvisionClassifier`): the same wrapper with
the normalisation inside the network (the mean/std of the model's timm pretrained config), the
same training step, and the same ONNX export ending in a softmax (``outputs="probabilities"``).

Pretrained weights are only ever read from a local cache, never downloaded: the model's
Hugging Face Hub files (``$HF_HUB_CACHE``, default ``$HF_HOME/hub`` =
``~/.cache/huggingface/hub``), found with ``huggingface_hub.try_to_load_from_cache`` (a lookup on
disk), or timm's legacy release file in the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
The file is read by winnow (safetensors, or ``torch.load(weights_only=True)``) and handed to timm
as a state dict, so timm's own adaptation (classifier dropped for another number of classes,
its checkpoint filters) applies and no code of timm's that can reach the network runs; timm is
called with ``HF_HUB_OFFLINE=1`` all the same.

timm (Apache-2.0) is imported only when a timm model is built or its weights looked up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from winnow.errors import InvalidInputError, NotFoundError
from winnow.train.base import WeightsSource, hub_checkpoint, register, register_family
from winnow.train.torchvision_classification import IMAGENET_MEAN, IMAGENET_STD, Classifier, TorchvisionClassifier

PREFIX = "timm"
HF_URL = "https://huggingface.co/"
#: Files a timm Hub repository keeps its weights in, preferred first (timm's own order).
HF_FILES = ("model.safetensors", "pytorch_model.bin")
#: Registered by name (small, quick on a CPU); any other timm model works as ``timm:ARCH``.
LISTED = {
    "resnet10t": "ResNet-10-T (timm), the smallest ResNet",
    "resnet18": "ResNet-18 (timm, ResNet strikes back weights)",
    "mobilenetv3_small_050": "MobileNetV3-Small at half width (timm)",
    "mobilenetv3_large_100": "MobileNetV3-Large (timm)",
    "efficientnet_b0": "EfficientNet-B0 (timm)",
    "convnext_atto": "ConvNeXt-Atto (timm)",
}


def hf_hub_cache() -> Path:
    """The Hugging Face Hub cache folder, read from the environment at each call (as
    ``huggingface_hub.constants`` computes it at import): ``$HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` for the duration (environment and ``huggingface_hub``'s constant, which
    it reads once at import): a Hub call that would reach the network raises instead."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants = None
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants
    before = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = before
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's tensors: safetensors, or a PyTorch file loaded with ``weights_only=True``
    (a checkpoint cannot run code)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise InvalidInputError(f"{path}: not a readable checkpoint ({exc})") from None
    for key in ("state_dict", "model"):  # timm's training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InvalidInputError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


class TimmClassifier(TorchvisionClassifier):
    """A timm classification model behind the :class:`~winnow.train.base.Backend` interface.

    ``arch``: a timm model name, optionally with its pretrained tag (``resnet18.a1_in1k``).
    """

    licence = "Apache-2.0 (timm); pretrained weights: see the model card"

    def __init__(self, arch: str, description: str = ""):
        self.arch = arch
        self.name = f"{PREFIX}:{arch}"
        self.description = description or f"{arch} (timm)"
        self.widths = False
        self._cfg: dict[str, Any] | None = None

    # -- timm facts (imports timm)

    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's pretrained config for ``arch`` (mean/std, Hub id, classifier, licence); ``{}`` when it has none."""
        if self._cfg is None:
            from timm.models import get_pretrained_cfg

            cfg = get_pretrained_cfg(self.arch)
            self._cfg = cfg.to_dict() if cfg is not None else {}
        return self._cfg

    def _kwargs(self, num_classes: int, image_size: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_classes": num_classes}
        if self.pretrained_cfg().get("fixed_input_size"):  # ViT-like: positional embeddings sized for the input
            kwargs["img_size"] = image_size
        return kwargs

    # -- building

    def build(self, num_classes: int, image_size: int, *, width: float = 1.0) -> nn.Module:
        """A randomly initialised timm model (``pretrained=False``: no download) in winnow's classifier wrapper."""
        import timm

        self.check_options(image_size, width)
        cfg = self.pretrained_cfg()
        mean, std = cfg.get("mean") or IMAGENET_MEAN, cfg.get("std") or IMAGENET_STD
        if len(mean) != 3 or len(std) != 3:
            raise InvalidInputError(f"{self.name!r} does not take RGB input (its mean has {len(mean)} channels)")
        kwargs = self._kwargs(num_classes, image_size)
        with offline():
            net = timm.create_model(self.arch, pretrained=False, **kwargs)
        model = Classifier(net, mean, std)
        model.timm_kwargs = kwargs  # how it was built (for loading pretrained weights); not in the state dict
        return model

    # -- pretrained weights: local caches only

    def weights_sources(self) -> list[WeightsSource]:
        cfg = self.pretrained_cfg()
        out: list[WeightsSource] = []
        hub = cfg.get("hf_hub_id")
        if hub:
            files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_FILES
            for f in files:
                out.append(WeightsSource(f"{hub}/{f}", f"{HF_URL}{hub}", f"{cfg.get('tag') or 'pretrained'} (timm, Hugging Face Hub)", part="net"))
        url = cfg.get("url")
        if url and url.startswith(("http://", "https://")) and url.endswith((".pth", ".pt", ".bin", ".safetensors")):
            out.append(WeightsSource(url.rsplit("/", 1)[1], url, f"{cfg.get('tag') or 'pretrained'} (timm release file)", part="net"))
        return out

    def _locate(self, source: WeightsSource) -> Path | None:
        if source.url.startswith(HF_URL):
            from huggingface_hub import try_to_load_from_cache

            repo, filename = source.file.rsplit("/", 1)
            found = try_to_load_from_cache(repo, filename, cache_dir=str(hf_hub_cache()))  # on-disk lookup only
            return Path(found) if isinstance(found, str) and Path(found).is_file() else None
        path = hub_checkpoint(source.file)
        return path if path.is_file() else None

    def cached_weights(self) -> tuple[WeightsSource, Path] | None:
        for source in self.weights_sources():
            path = self._locate(source)
            if path is not None:
                return source, path
        return None

    def missing_weights_message(self) -> str:
        cfg = self.pretrained_cfg()
        if not self.weights_sources():
            return f"timm publishes no pretrained weights for {self.arch!r}; use --pretrained no"
        hub = cfg.get("hf_hub_id")
        where = f"the Hugging Face cache ({hf_hub_cache()})"
        fetch = f" (on a machine with network: `hf download {hub}`, then copy that cache)" if hub else ""
        return (
            f"no pretrained weights for {self.name!r} in {where} or the torch cache "
            f"({hub_checkpoint('')}); winnow never downloads them. Put {hub or self.weights_sources()[0].file} there{fetch}; "
            f"or use --pretrained no"
        )

    def load_pretrained(self, model: Any, source: WeightsSource, path: Path) -> dict[str, Any]:
        """Load a cached checkpoint through timm's own adaptation (offline, from a state dict):
        returns ``{"file", "part", "loaded", "skipped", "total", "licence"}`` (tensor counts by name and shape)."""
        import timm

        state = read_state(path)
        own = model.net.state_dict()
        loaded = sum(1 for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape))
        kwargs = getattr(model, "timm_kwargs", None) or {"num_classes": int(model.net.num_classes)}
        with offline():
            fresh = timm.create_model(self.arch, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
        model.net.load_state_dict(fresh.state_dict())
        return {
            "file": source.file,
            "part": "net",
            "loaded": loaded,
            "skipped": len(state) - loaded,
            "total": len(own),
            "licence": self.pretrained_cfg().get("license"),
        }

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"family": PREFIX, "arch": self.arch}


def timm_backend(arch: str) -> TimmClassifier:
    """``timm:ARCH`` for any timm model name (refused with suggestions when timm does not know it)."""
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('.')[0][:8]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise NotFoundError(f"timm has no model {arch!r} (`timm.list_models()` lists them){hint}")
    return TimmClassifier(arch)


for _arch, _description in LISTED.items():
    register(TimmClassifier(_arch, _description))
register_family(PREFIX, timm_backend)

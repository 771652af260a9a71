"""Any image model exported to ONNX, given by path, as an embedder (onnxruntime, CPU).

``onnx:/models/resnet18-features.onnx`` loads the file with onnxruntime and feeds it images
resized to ``input_size`` (square; the model's own input size when it declares one, else 224), scaled to ``[0, 1]`` and normalised with ``mean``/``std``
(ImageNet's by default), NCHW float32. The first output, flattened per image and
L2-normalised, is the embedding.

Safety (BAD_INPUTS #19): only ONNX is accepted, never a pickle; tensors stored as external data
must live inside the model's folder; the model's hash is part of the cache key, so a changed file
never reuses stale embeddings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from winnow.embed.base import Embedder, l2_normalise, register
from winnow.errors import InvalidInputError, UnsafeInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_model_file(path: Path) -> None:
    """Refuse non-ONNX files and external-data locations outside the model's folder."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such model file")
    head = path.read_bytes()[:2]
    if head[:1] == b"\x80":  # pickle protocol 2+ header: a torch .pt / .pkl file
        raise UnsafeInputError(f"{path}: looks like a pickle; only ONNX models are accepted (export with torch.onnx)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InvalidInputError(f"{path}: not a readable ONNX model ({exc})") from None
    folder = path.parent.resolve()
    for tensor in list(model.graph.initializer):
        for entry in tensor.external_data:
            if entry.key == "location":
                target = (folder / entry.value).resolve()
                if not target.is_relative_to(folder):
                    raise UnsafeInputError(
                        f"{path}: tensor {tensor.name!r} points at external data outside the model folder ({entry.value!r})"
                    )


@register
class OnnxEmbedder(Embedder):
    name = "onnx"
    version = 2  # 2: images with alpha are composited over mid-grey (media.decode)

    def __init__(
        self,
        path: str | Path,
        *,
        input_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 32,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        check_model_file(self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 0
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        static = [d for d in model_input.shape[2:] if isinstance(d, int)]
        self.input_size = int(input_size or (static[0] if len(static) == 2 else 224))
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
        self.batch_size = batch_size
        self._digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        probe = self._run([Image.new("RGB", (self.input_size, self.input_size))])
        self.dim = int(probe.shape[1])

    @property
    def cache_key(self) -> str:
        return f"onnx-{self._digest}-{self.input_size}-v{self.version}"

    def _batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        size = (self.input_size, self.input_size)
        arr = np.stack([np.asarray(im.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) for im in images])
        arr = arr.transpose(0, 3, 1, 2) / 255.0
        return ((arr - self.mean) / self.std).astype(np.float32)

    def _run(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = self.session.run(None, {self.input_name: self._batch(images)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(images), -1)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._run(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return l2_normalise(np.concatenate(parts))

"""Writing and opening winnow's ONNX files.

Export uses the torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``, which
needs onnxscript) wherever the graph has static shapes: classifiers and the dense part of the
single-stage detectors (see :mod:`winnow.train.decode`). The input is one image,
``1 x 3 x S x S`` float32 RGB in ``[0, 1]`` (the batch is static: exporting a dynamic one takes
2-3 times longer and serving runs one image at a time anyway). Two-stage detectors (Faster/Mask
R-CNN) have their NMS in the middle of the network, which torch.export cannot capture; they use
the TorchScript exporter (``dynamo=False``, deprecated but still shipped in torch 2.14, the path
torchvision tests for these models), and every export is checked against PyTorch before the model
is registered (``files.onnx.verified``).

Weights are stored inside the one ``.onnx`` file (no external data). The file's
``metadata_props`` carry a ``winnow`` JSON document (backend, task, image size, classes, how to
decode the outputs), so a served file describes itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

METADATA_KEY = "winnow"


@contextlib.contextmanager
def _quiet():
    """The exporters print progress on stdout and warn a lot; keep ``--json`` output clean."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def export_dynamo(module: Any, example: Any, path: Path) -> None:
    """torch.export-based export of ``module(example)`` at the example's (static) shape: one
    ``1 x 3 x S x S`` image per run (a dynamic batch dimension makes the export 2-3x slower)."""
    import torch

    with _quiet():
        torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False)


def export_torchscript(module: Any, example: tuple[Any, ...], path: Path, input_names: list[str], output_names: list[str]) -> None:
    """The TorchScript exporter (traces once, at the example's shapes)."""
    import torch

    with _quiet():
        torch.onnx.export(
            module, example, str(path), dynamo=False, opset_version=17, input_names=input_names, output_names=output_names
        )


def finish(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Store ``info`` in the file's metadata; return it with the file's opset added."""
    import onnx

    model = onnx.load(str(path))
    info = dict(info)
    info["opset"] = int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(info, sort_keys=True)
    onnx.save(model, str(path))
    return info


def open_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for a winnow ONNX file (refusing pickles and stray external data)."""
    import onnxruntime as ort

    from winnow.embed.onnx import check_model_file

    check_model_file(Path(path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def read_info(session: Any) -> dict[str, Any]:
    """The ``winnow`` metadata of an open session."""
    from winnow.errors import InvalidInputError

    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise InvalidInputError("this ONNX file was not written by winnow (no 'winnow' metadata)")
    return json.loads(meta[METADATA_KEY])

"""The fit loop every backend shares: seeded, deterministic data order, SGD or AdamW with a
linear warm-up then cosine learning rate, a JSON-able log entry per epoch, a progress callback.

Threads: ``torch.set_num_threads`` gets ``$WINNOW_THREADS`` (default: every CPU) for the length
of the fit and is restored afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from winnow.errors import InvalidInputError, WinnowError
from winnow.train.base import Backend, threads

ProgressFn = Callable[[int, int], None]
EpochLog = dict[str, Any]

OPTIMIZERS = ("sgd", "adamw")


class TrainingError(WinnowError):
    """Training cannot go on (a loss that is not finite, ...)."""


@dataclass
class FitConfig:
    """Hyper-parameters of one fit. ``warmup`` is a fraction of all steps (linear from 1% of ``lr``).

    ``bn_momentum`` replaces the batch-norm momentum the network was built with (``None`` keeps
    it): torchvision's MobileNetV3 models use 0.01-0.03, tuned for ImageNet/COCO-length runs; on a
    short run their running statistics lag the weights for many epochs, and the model scores at
    chance in eval mode while its training loss is already low (bench/train.py, digits: validation
    accuracy at chance for 11 epochs with 0.01, 0.88 after 2 epochs with 0.1, torch's default).
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup: float = 0.05
    grad_clip: float | None = 10.0
    bn_momentum: float | None = 0.1
    seed: int = 0

    def check(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise InvalidInputError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidInputError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.lr, int | float) and 0 < self.lr < 10):
            raise InvalidInputError(f"learning rate must be in (0, 10), got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidInputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"seed must be a non-negative integer, got {self.seed!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def torch_threads(n: int | None = None):
    """``torch.set_num_threads`` for a block (``$WINNOW_THREADS`` by default), then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of ``total`` steps, then cosine to 0."""
    warm = int(total * warmup)
    if step < warm:
        return 0.01 + 0.99 * step / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's shuffled batches, sizes within one of each other (no batch of one when it can
    be helped: batch norm refuses a single image with 1x1 feature maps)."""
    order = torch.randperm(n, generator=generator).tolist()
    count = max(1, math.ceil(n / batch_size))
    return [list(map(int, part)) for part in np.array_split(np.asarray(order, dtype=np.int64), count) if len(part)]


def fit(
    backend: Backend,
    model: torch.nn.Module,
    items: Sequence[tuple[Any, Any]],
    config: FitConfig,
    *,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
    eval_every: int = 0,
    progress: ProgressFn | None = None,
    log: Callable[[EpochLog], None] | None = None,
    stop: Callable[[EpochLog], bool] | None = None,
) -> list[EpochLog]:
    """Train ``model`` on ``items`` (prepared ``(input, target)`` pairs); return the epoch log.

    Each entry: ``epoch``, ``steps``, ``loss`` (mean over the epoch), ``losses`` (mean of each
    named part), ``first_loss``/``last_loss`` (the epoch's first and last batch), ``lr`` (at the
    end of the epoch), ``seconds``, and ``valid`` (``evaluate(epoch)``) on every
    ``eval_every``-th epoch, the last one, and the one where ``stop`` ends the fit.
    """
    config.check()
    if len(items) == 0:
        raise InvalidInputError("nothing to train on: the train split is empty")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if config.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = config.bn_momentum
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(batches(len(items), config.batch_size, torch.Generator().manual_seed(0)))
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, config.warmup))
    entries: list[EpochLog] = []
    done = 0
    with torch_threads():
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            sums: dict[str, float] = {}
            losses: list[float] = []
            for batch in batches(len(items), config.batch_size, generator):
                pairs = [items[i] for i in batch]
                loss, parts = backend.train_step(model, [p[0] for p in pairs], [p[1] for p in pairs])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"the loss is {value} at epoch {epoch}, step {len(losses) + 1}; try a lower learning rate (--lr)"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                sched.step()
                losses.append(value)
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                done += 1
                if progress is not None:
                    progress(done, total)
            entry: EpochLog = {
                "epoch": epoch,
                "steps": len(losses),
                "loss": sum(losses) / len(losses),
                "losses": {k: v / len(losses) for k, v in sums.items()},
                "first_loss": losses[0],
                "last_loss": losses[-1],
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - started, 3),
            }
            last = epoch == config.epochs
            if evaluate is not None and (last or (eval_every and epoch % eval_every == 0)):
                entry["valid"] = evaluate(epoch)
            halt = stop is not None and stop(entry)
            if halt and evaluate is not None and "valid" not in entry:
                entry["valid"] = evaluate(epoch)
            entries.append(entry)
            if log is not None:
                log(entry)
            if halt:
                break
    return entries

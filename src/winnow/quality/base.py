"""The shape of a health check, the finding it reports, and the registry that finds checks by id.

A check is one small class in the module of its family (``files``, ``duplicates``,
``geometry``, ``balance``, ``image_quality``, ``label_errors``), decorated with
:func:`register`. It reads the shared, computed-once facts of a :class:`~winnow.quality.view.ProjectView`
(records, per-image statistics, hashes, embeddings, the neighbour graph) and yields
:class:`Finding` objects. Every finding carries a continuous ``score`` in ``[0, 1]`` (how bad)
as well as its severity, so users can rank and choose their own threshold (cleanlab's Datalab
does the same).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from winnow.errors import InvalidInputError

if TYPE_CHECKING:
    from winnow.quality.view import ProjectView

SEVERITIES = ("error", "warning", "info")
_SEVERITY_WEIGHT = {"error": 3.0, "warning": 2.0, "info": 1.0}

#: Actions a suggestion can name. ``winnow fix`` applies the ones marked automatic.
ACTIONS = (
    "delete_image",  # remove the image record (automatic for exact duplicates with the same labels)
    "merge_images",  # keep one record of a duplicate group, merge tags/metadata
    "delete_annotation",  # remove an annotation (automatic for degenerate boxes)
    "clip_box",  # clip a box to its image (automatic)
    "relabel",  # change an annotation's or image's class to ``to``
    "add_box",  # a box the labels are missing
    "fix_box",  # redraw a box
    "resplit",  # move images so a group stays in one split
    "collect_more",  # label more images of a class / slice
    "review",  # look at it; no automatic fix
)


@dataclass
class Suggestion:
    """What to do about a finding: an ``action`` (see :data:`ACTIONS`), a sentence, and its
    parameters (e.g. ``{"to": "cat"}`` for ``relabel``, ``{"keep": "a.jpg"}`` for ``merge_images``)."""

    action: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown suggestion action {self.action!r}")


@dataclass
class Finding:
    """One thing a check found. Field names are part of the ``winnow check --json`` contract.

    Attributes:
        check: the check's id (``near_duplicate``).
        severity: ``error``, ``warning`` or ``info``.
        message: one sentence a person understands.
        images: names of the images concerned.
        annotations: store ids of the annotations concerned (when it is about labels).
        evidence: the numbers behind it (distances, IoUs, scores, counts).
        suggestion: what to do.
        score: how bad, in ``[0, 1]``; comparable within a check.
        impact: the rank key the report sorts by (set by the engine).
    """

    check: str
    severity: str
    message: str
    images: list[str] = field(default_factory=list)
    annotations: list[int] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestion: Suggestion | None = None
    score: float = 1.0
    impact: float = 0.0

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score"] = round(float(self.score), 6)
        d["impact"] = round(float(self.impact), 6)
        return d


class Check(ABC):
    """One health check. Subclasses set the class attributes and implement :meth:`run`.

    ``params`` holds the defaults of the check's user-settable parameters
    (``winnow check --param near_duplicate.max_distance=8``); :meth:`run` receives the merged
    values as keyword arguments.
    """

    id: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str]
    severity: ClassVar[str] = "warning"
    params: ClassVar[dict[str, Any]] = {}
    #: Tasks the check applies to; ``None`` = every task.
    tasks: ClassVar[frozenset[str] | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls.run, "__isabstractmethod__", False):  # an abstract intermediate base
            return
        for attr in ("id", "family", "description"):
            if not getattr(cls, attr, None):
                raise TypeError(f"check class {cls.__name__} must set `{attr}`")
        if cls.severity not in SEVERITIES:
            raise TypeError(f"check {cls.id}: unknown severity {cls.severity!r}")

    @abstractmethod
    def run(self, view: ProjectView, **params: Any) -> Iterable[Finding]:
        """Yield the findings of this check on ``view``."""

    def finding(self, message: str, **kwargs: Any) -> Finding:
        """A :class:`Finding` of this check with its default severity."""
        kwargs.setdefault("severity", self.severity)
        return Finding(check=self.id, message=message, **kwargs)


_REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: make a check available by its ``id``."""
    if cls.id in _REGISTRY and _REGISTRY[cls.id] is not cls:
        raise ValueError(f"check {cls.id!r} registered twice")
    _REGISTRY[cls.id] = cls
    return cls


def _load_builtin() -> None:
    import importlib

    for module in ("files", "duplicates", "geometry", "balance", "image_quality", "label_errors", "detection_errors", "drift"):
        try:
            importlib.import_module(f"winnow.quality.{module}")
        except ModuleNotFoundError as exc:  # a family not written yet
            if exc.name != f"winnow.quality.{module}":
                raise


def all_checks() -> dict[str, type[Check]]:
    """Every registered check by id, in registration order."""
    _load_builtin()
    return dict(_REGISTRY)


def get_check(check_id: str) -> Check:
    checks = all_checks()
    try:
        return checks[check_id]()
    except KeyError:
        raise InvalidInputError(f"unknown check {check_id!r}; known checks: {', '.join(sorted(checks))}") from None


def impact(finding: Finding, total_images: int) -> float:
    """The rank key: severity x score x the share of the dataset it touches (at least one image).

    An error on one image outranks a warning on one image; a warning on 30% of the images
    outranks an error on one of 10,000.
    """
    touched = max(len(finding.images), 1)
    share = touched / max(total_images, 1)
    return _SEVERITY_WEIGHT[finding.severity] * (0.5 + 0.5 * float(finding.score)) * (1.0 + 10.0 * share) * (
        1.0 + 0.01 * min(touched, 100)
    )

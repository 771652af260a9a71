"""Model evaluation: COCO detection/segmentation metrics, classification metrics, slices, errors.

One module per responsibility:

* :mod:`winnow.evaluate.inputs` - read and validate COCO ground truth and predictions (JSON files
  or parsed objects) into engine-ready documents plus numpy columns;
* :mod:`winnow.evaluate.engine` - the COCO engine (faster-coco-eval, pycocotools as a fallback);
  every AP/AR number winnow reports comes from it;
* :mod:`winnow.evaluate.matching` - greedy per-image matching of predictions to ground truth
  (for the confusion matrix, the error lists and the slice bootstrap);
* :mod:`winnow.evaluate.ap` - COCO's 101-point interpolated AP over score/TP arrays, with image
  weights (the bootstrap of slice scores);
* :mod:`winnow.evaluate.errors` - ranked false positives, false negatives, confusions, low-IoU;
* :mod:`winnow.evaluate.coco` - :func:`evaluate_coco` and :class:`DetectionReport`;
* :mod:`winnow.evaluate.classification` - :func:`evaluate_classification`;
* :mod:`winnow.evaluate.slices` - metrics per tag, metadata value, split, class, box size and
  condition, with bootstrap confidence intervals and ``worst_slices``;
* :mod:`winnow.evaluate.plots` - PR curves, confusion matrix and slice bar chart as PNG bytes.

Importing this package imports neither the engine nor matplotlib (they load on first use).
"""

from __future__ import annotations

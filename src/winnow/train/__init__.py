"""Training: model backends (one module each, registered by name), the shared fit loop, ONNX
export and the numpy decode that serves it. See docs/training.md.

Importing this package loads nothing heavy; :func:`winnow.train.base.get_backend` imports the
backend modules (and torch) on first use.
"""

"""Dataset versions: immutable, content-addressed snapshots of a project.

- ``splits``: leak-free, stratified, group-aware split assignment (pure).
- ``transforms``: preprocessing and augmentation specs and their application (albumentations).
- ``manifest``: the Parquet manifest of a version, its content id and checksums.
- ``materialize``: turning a version into output images (preprocessed, augmented), cached.
- ``diff``: what changed between two versions.
- ``torch_dataset``: a version streamed as a PyTorch ``Dataset`` (needs torch).
"""

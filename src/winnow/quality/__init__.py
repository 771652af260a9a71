"""Data health checks: one module per family, each check registered by id.

See :mod:`winnow.quality.base` for the shape of a check and a finding, :mod:`winnow.quality.view`
for the shared facts, and :mod:`winnow.quality.engine` for running and ranking.
"""

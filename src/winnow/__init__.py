"""winnow: a self-hosted, data-centric platform for computer vision.

Importing this package has no side effects: no database connection, no model loading.
"""

__version__ = "0.1.0"

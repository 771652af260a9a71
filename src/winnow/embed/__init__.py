"""Image embedders: one module per embedder, registered by name (see :mod:`winnow.embed.base`)."""

"""Serving deployed models: the inference pool behind ``POST /projects/{p}/predict``."""

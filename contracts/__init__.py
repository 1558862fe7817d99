"""The contracts between the pipeline, the registry and the server: names, keys and formats.

Dependency-free and free of side effects on import (no TensorFlow, no TFX, no environment
changes), so that every part can import it, and the registry and the server never import
``modules/`` (the user code TFX hashes and loads).
"""

# The project's one version string: pyproject.toml reads it (setuptools' dynamic ``attr``), the
# model server reports it (``/v1``-less root, /openapi.json).
__version__ = "0.1.0"

"""The contracts between the pipeline, the registry and the server: names, keys and formats.

Dependency-free and free of side effects on import (no TensorFlow, no TFX, no environment
changes), so that every part can import it, and the registry and the server never import
``modules/`` (the user code TFX hashes and loads).
"""

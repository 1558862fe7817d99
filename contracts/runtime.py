"""``configure_tensorflow()``: the one TensorFlow/Keras policy, called by every entry point.

Call it before anything imports TensorFlow (runners, the server, the notebook, tests,
benchmarks). It selects Keras 2 (tf_keras) on purpose: tensorflow-transform 1.16 only works with
it, TFMA 0.47 switches to it anyway, and ``tf.keras`` is bound on first use, so training,
evaluation and serving must agree before the first import. It also sets one log-level policy:
TensorFlow's C++ start-up chatter (CUDA/cuDNN probing on a CPU-only machine) is hidden unless
``TF_CPP_MIN_LOG_LEVEL`` is set, and google-api-core's per-module "Python 3.10 is old" warnings
are filtered.

Importing this module changes nothing; calling the function does, and calling it twice is
harmless. A value the user already set in the environment wins.
"""

from __future__ import annotations

import os
import warnings

DEFAULT_TF_LOG_LEVEL = "3"  # hide even the CPU-only cuDNN/cuFFT/cuBLAS registration ERROR lines


def configure_tensorflow(log_level: str | None = None) -> None:
    """Select Keras 2 and quiet TensorFlow's start-up logs (``log_level`` overrides the default)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", log_level or DEFAULT_TF_LOG_LEVEL)
    # google-api-core warns once per google.cloud module that Python 3.10 is old; TFX imports dozens.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core.*")

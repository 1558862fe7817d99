"""User code TFX loads into Transform, Trainer and Tuner.

We use Keras 2 (tf_keras) everywhere on purpose: tensorflow-transform 1.16 only works with it, and
TFMA 0.47 switches to it anyway. ``tf.keras`` is bound on first use, so the choice is made here,
before anything imports TensorFlow, and again in every entry point.
"""

import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# google-api-core warns once per google.cloud module that Python 3.10 is old; TFX imports dozens.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core.*")

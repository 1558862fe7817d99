"""Load an imported model once to check it can be served. The only registry module importing TF."""

from __future__ import annotations

import os

from contracts.dictionary import parse_dictionary
from contracts.runtime import configure_tensorflow
from contracts.signatures import DICTIONARY_RELPATH, SERVING_DEFAULT
from metastore.errors import InputError

REQUIRED_SIGNATURE = SERVING_DEFAULT


def check_model(root: str, fmt: str) -> list[str]:
    """Load the model at ``root``; raise InputError unless it has a ``serving_default`` signature.

    Returns the class names from ``assets.extra/dict.tsv`` (empty when absent).
    """
    configure_tensorflow()  # Keras 2 and quiet logs, before TensorFlow is imported
    import tensorflow as tf

    if fmt == "h5":
        import tf_keras

        try:
            tf_keras.models.load_model(os.path.join(root, "model.h5"), compile=False)
        except Exception as exc:  # any load failure means the archive is not a usable model
            raise InputError(f"model.h5 in the archive cannot be loaded: {exc}") from None
    else:
        try:
            loaded = tf.saved_model.load(root)
        except Exception as exc:
            raise InputError(f"the SavedModel in the archive cannot be loaded: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                             ) from None
        signatures = sorted(loaded.signatures.keys())
        if REQUIRED_SIGNATURE not in signatures:
            raise InputError(f"the SavedModel has no {REQUIRED_SIGNATURE!r} signature "
                             f"(it has {signatures or 'none'}); export it with one")
    path = os.path.join(root, DICTIONARY_RELPATH)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        try:
            return parse_dictionary(handle.read())
        except ValueError as exc:
            raise InputError(f"{DICTIONARY_RELPATH} in the archive: {exc}; fix the file "
                             "(header 'label<TAB>tag', then '<index><TAB><name>' lines)") from None

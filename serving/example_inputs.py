"""The serialized tf.Examples of a TF Serving ``Input`` proto (Classify / Regress / warm-up).

Its own module so that the warm-up replay (serving.warmup, loaded with every servable) and the
gRPC front end (serving.grpc_server) share it without importing each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.errors import invalid


def serialized_examples(request_input: Any) -> np.ndarray:
    """An object array of serialized tf.Examples (a context merged into each), or 400."""
    which = request_input.WhichOneof("kind")
    if which == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif which == "example_list_with_context":
        context = request_input.example_list_with_context.context
        examples = []
        for example in request_input.example_list_with_context.examples:
            merged = type(example)()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            examples.append(merged.SerializeToString())
    else:
        raise invalid("Input is empty: send tf.Examples in input.example_list")
    if not examples:
        raise invalid("Input is empty: send at least one tf.Example")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array

"""KFP v2's ExampleGen driver with our input fingerprint, for data in object storage.

TFX compiles every ``FileBasedExampleGen`` for Kubeflow Pipelines v2 with a pre-cache-check
hook, ``python -m tfx.orchestration.kubeflow.v2.file_based_example_gen.driver``, that runs
before the executor and fingerprints the input files (which is what lets KFP skip ExampleGen when
the data did not change). That driver lists the files through ``tf.io.gfile``, which in our
resolved set has ``gs://`` but no ``s3://``, so a run with ``--data s3://...`` would stop there,
before our executor (which reads through Beam's filesystems) ever starts. TFX has no setting
for that hook's command, so ``pipeline.kubeflow_runner`` points it at this module when the data
is in such a store (``uses_storage_driver``).

This runs TFX's own driver unchanged except for one name: the input processor it builds is
``StorageInputProcessor`` (``pipeline.components.example_gen_driver``, the one our local and
Beam runs use), which lists the files through Beam's ``FileSystems``. The hook gets the same
Beam arguments as the executor, so ``--s3_endpoint_url`` reaches the listing too.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

TFX_DRIVER_MODULE = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"


def uses_storage_driver(input_base: str) -> bool:
    """Whether TFX's driver cannot list ``input_base`` (tf.io.gfile has no such scheme here:
    the same fact that limits ``--pipeline-root``) and this module must."""
    from datasources.storage import scheme as uri_scheme
    from pipeline.config import PIPELINE_ROOT_SCHEMES

    scheme = uri_scheme(input_base)
    return bool(scheme) and scheme not in PIPELINE_ROOT_SCHEMES


def main(argv: Sequence[str] | None = None) -> None:
    from absl import app
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver as tfx_driver

    from datasources import storage
    from pipeline.components.example_gen_driver import StorageInputProcessor

    args = list(sys.argv if argv is None else argv)
    storage.configure([a for a in args[1:] if a.startswith("--") and "=" in a])  # Beam's
    # TFX's driver calls ``input_processor.FileBasedInputProcessor(...)``: give it ours
    tfx_driver.input_processor = types.SimpleNamespace(  # type: ignore[assignment]
        FileBasedInputProcessor=StorageInputProcessor)
    app.run(tfx_driver.main, argv=args, flags_parser=tfx_driver._parse_flags)


if __name__ == "__main__":
    main()

"""ExampleGen's driver for data in object storage: the input fingerprint without ``tf.io.gfile``.

TFX's ``FileBasedDriver`` fingerprints the files each split pattern matches (that is what makes a
second run with unchanged data cached) through ``tfx.dsl.io.fileio``, i.e. ``tf.io.gfile``, and the
TensorFlow of our resolved set has no ``s3://`` filesystem. For a remote input base this driver
lists the files through ``storage`` (Beam's ``FileSystems``) instead and fingerprints their names
and sizes (object stores give no inode or mtime TFX's local fingerprint uses). Local input is
left to TFX's own driver, unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from tfx.components import FileBasedExampleGen
from tfx.components.example_gen import driver, input_processor, utils
from tfx.proto import example_gen_pb2

from datasources import storage


class StorageInputProcessor(input_processor.FileBasedInputProcessor):
    """Fingerprints a remote input base through ``storage``; no spans or versions there."""

    def resolve_span_and_version(self) -> tuple[int, int | None]:
        base = self._input_base_uri
        if not storage.is_remote(base):
            return super().resolve_span_and_version()
        if self._is_match_span or self._is_match_date or self._is_match_version:
            raise ValueError(f"{base}: {{SPAN}}/{{VERSION}} patterns are not supported for "
                             "data in object storage; point --data at one snapshot")
        storage.forget()
        fingerprints = []
        for split in self._splits:
            files = storage.glob_files(base, split.pattern)
            digest = hashlib.sha256()
            total = 0
            for path in files:
                size = storage.size(path)
                total += size
                digest.update(f"{path}\0{size}\n".encode())
            fingerprints.append(f"split:{split.name},num_files:{len(files)},total_bytes:{total},"
                                f"names_and_sizes_sha256:{digest.hexdigest()}")
        self._fingerprint = "\n".join(fingerprints)
        return 0, None


class StorageDriver(driver.FileBasedDriver):
    def get_input_processor(self, splits: Iterable[example_gen_pb2.Input.Split],
                            range_config: Any = None,
                            input_base_uri: str | None = None) -> input_processor.InputProcessor:
        assert input_base_uri
        return StorageInputProcessor(input_base_uri, splits, range_config)


class StorageExampleGen(FileBasedExampleGen):
    """TFX's FileBasedExampleGen with the driver above (our executor is set by the caller)."""

    DRIVER_CLASS = StorageDriver


__all__ = ["StorageDriver", "StorageExampleGen", "StorageInputProcessor", "utils"]

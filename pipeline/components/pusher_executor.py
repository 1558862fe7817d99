"""Pusher executor: push a blessed model to ``<base>/<N>/`` with consecutive integer versions.

TFX 1.16's Pusher names versions after the unix time and copies files in place (saved_model.pb
last). We want what TF Serving users expect and what our registry shows: versions 1, 2, 3 ... and
a version directory that appears whole or not at all. So the model is published the way
``mlmodel deploy`` publishes one (``contracts.publish``): copied into a dot-prefixed staging
directory beside the versions (never served: not numeric) that names its host and process, then
renamed to the next version. An exclusive lock on ``<base>/.push.lock`` serialises pushes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils, proto_utils

from contracts import publish
from contracts.versions import versions
from metastore.locking import FileLock


def _locked(base_directory: str) -> contextlib.AbstractContextManager[None]:
    """Serialise pushes to one model folder (a lock file beside its versions)."""
    os.makedirs(base_directory, exist_ok=True)
    return FileLock(os.path.join(base_directory, ".push.lock")).hold()


PUSHED_FROM_RELPATH = os.path.join("assets.extra", "pushed_from.txt")
PUSH_CRASH_ENV = "MNIST_TFX_TEST_PUSH_CRASH_AT"


def _pushed_from(version_dir: str) -> str | None:
    try:
        with open(os.path.join(version_dir, PUSHED_FROM_RELPATH)) as handle:
            return handle.read().strip()
    except OSError:
        return None


def push_new_version(model_path: str, base_directory: str) -> tuple[int, str]:
    """Copy the SavedModel at ``model_path`` to ``base_directory/<N>``; returns (N, path).

    Staging, numbering and the rename are ``contracts.publish``'s, as for ``mlmodel deploy``, so
    ``mlmodel doctor`` finds what a killed push left. Idempotent: if the newest version was pushed
    from the same ``model_path`` (a re-run whose Trainer was cached, blessed again), that version
    is returned and nothing is copied.
    """
    with _locked(base_directory):
        found = versions(base_directory)
        if found:
            newest = os.path.join(base_directory, str(found[-1]))
            if _pushed_from(newest) == os.path.abspath(model_path):
                return found[-1], newest
        staging = publish.stage_copy(model_path, base_directory)
        try:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            with open(os.path.join(staging, PUSHED_FROM_RELPATH), "w") as handle:
                handle.write(os.path.abspath(model_path) + "\n")
            crash_point("before_publish")
            return publish.publish(staging, base_directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def crash_point(step: str) -> None:
    """Test hook: exit hard at ``step`` when $MNIST_TFX_TEST_PUSH_CRASH_AT names it (a killed
    Pusher, for ``mlmodel doctor``'s test)."""
    if os.environ.get(PUSH_CRASH_ENV) == step:
        os._exit(97)


class PusherExecutor(pusher_executor.Executor):
    """Pushes blessed models to integer versions, atomically; records the version in MLMD."""

    def GetModelPath(self, input_dict: dict[str, list[types.Artifact]]) -> str:  # noqa: N802
        """The InfraValidator's copy with its warm-up requests when it made one, else the model
        (TFX takes that copy only when the Pusher has no ``model`` input; we keep the input for
        the registry's lineage)."""
        infra = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY) or []
        if infra and infra[0].get_int_custom_property("has_model"):
            return path_utils.stamped_model_path(infra[0].uri)
        return super().GetModelPath(input_dict)

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            logging.info("Model not blessed: nothing pushed.")
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("only filesystem push destinations are supported")
        base_directory = destination.filesystem.base_directory
        if "://" in base_directory:
            raise ValueError(
                f"push destination {base_directory!r} is remote; this Pusher versions local "
                "directories atomically. Use a local --serving-dir."
            )
        model_path = self.GetModelPath(input_dict)
        version, serving_path = push_new_version(model_path, base_directory)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
        logging.info("Model pushed to %s (version %d).", serving_path, version)

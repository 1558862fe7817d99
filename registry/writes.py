"""The registry's writes: deploy, stop, rollback, label, delete, import, export, eval records.

Each change is one ``put_execution`` call (context update + artifacts + events in one transaction)
made while holding the registry write lock, so changes are atomic and serialised.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import publish
from contracts.signatures import SAVED_MODEL_FILE
from datasources import storage
from metastore import pipeline_models
from metastore.errors import ConflictError, InputError, NotFoundError
from metastore.store import (
    DATASET,
    DEPLOYMENT,
    EVALUATION,
    MODEL_VERSION,
    REGISTERED_MODEL,
    REGISTRY_ACTION,
    prop,
    set_prop,
)
from registry import files
from registry.entities import (
    DeployResult,
    ExportResult,
    _Model,
    check_label,
    check_name,
    default_user,
    serving_order,
)
from registry.reads import RegistryReader


class Registry(RegistryReader):
    """The model registry store: its reads and its writes. Safe from many processes at once."""

    # ------------------------------------------------------------------ writing helpers
    def _fresh_context(self, model: _Model, user: str, source: str,
                       **fields: Any) -> Any:
        """The model's RegisteredModel context to update (a new one if missing or deleted)."""
        now = time.time()
        if model.ctx is None:
            ctx = pb.Context(type_id=self.store.type_id("context", REGISTERED_MODEL), name=model.name)
        else:
            ctx = pb.Context()
            ctx.CopyFrom(model.ctx)
        if model.ctx is None or prop(ctx, "deleted", 0):
            for key, value in {
                "user": user, "source": source, "type": "tf", "category": "classification",
                "algorithm": "deep", "format": "saved_model", "serving_name": "",
                "serving": 0, "current_version": 0, "labels": "{}", "created_at": now,
                "deleted": 0, "hidden_before": model.hidden_before,
            }.items():
                set_prop(ctx, key, value)
        for key, value in fields.items():
            set_prop(ctx, key, value)
        set_prop(ctx, "updated_at", now)
        return ctx

    def _record(self, ctx: Any, action: str, user: str, version: int = 0, label: str = "",
                detail: str = "", inputs: list[Any] | None = None,
                outputs: list[Any] | None = None) -> int:
        """One atomic MLMD write: the Action execution, its artifacts/events, the context."""
        execution = pb.Execution(type_id=self.store.type_id("execution", REGISTRY_ACTION),
                                 last_known_state=pb.Execution.COMPLETE)
        for key, value in {
            "action": action, "model_name": ctx.name, "version": version, "label": label,
            "user": user, "at": time.time(),
            "current_version": int(prop(ctx, "current_version", 0) or 0),
            "serving": int(prop(ctx, "serving", 0) or 0), "detail": detail,
        }.items():
            set_prop(execution, key, value)
        pairs: list[tuple[Any, Any]] = []
        for artifact in inputs or []:
            pairs.append((artifact, pb.Event(type=pb.Event.INPUT)))
        for artifact in outputs or []:
            pairs.append((artifact, pb.Event(type=pb.Event.OUTPUT)))
        mlmd = self.store.mlmd
        from metastore.store import retry_busy

        exec_id, _, _ = retry_busy(
            lambda: mlmd.put_execution(execution, pairs, [ctx]), f"recording {action} of {ctx.name}"
        )
        return int(exec_id)

    def _locked_model(self, name: str) -> _Model:
        self.store.ensure_types()
        return self._model(name)

    # ------------------------------------------------------------------ deploy
    def deploy(self, name: str, label: str | None = None, user: str | None = None) -> DeployResult:
        """Copy the model's latest blessed push (or its imported files) into a new version.

        The version is the previous one + 1 (from 1), becomes current and serving; ``label``
        points at it. Safe under concurrency and crashes (see ``registry.files`` and
        ``contracts.publish``, which the pipeline's Pusher uses too).
        """
        user = user or default_user()
        check_name(user, "user")
        if label is not None:
            check_label(label)
        model = self._model(name)
        source, inputs = self._deploy_source(model)
        serving_name = self._serving_name(model, user)
        parent = os.path.join(self.serving_dir, serving_name)
        staging = files.copy_model(source, parent)
        files.crash_point("after_copy")
        try:
            with self.store.lock.hold():
                self.store.ensure_types()
                model = self._model(name)
                serving_name = self._serving_name(model, user)
                if os.path.dirname(staging) != os.path.join(self.serving_dir, serving_name):
                    raise ConflictError(f"model {name!r} changed serving name while deploying; retry")
                deployed = self._deployments(serving_name)
                recorded = {int(prop(a, "version")) for a in deployed}
                files.reconcile(parent, recorded)
                files.crash_point("before_rename")
                version, target = publish.publish(staging, parent, recorded)
                files.crash_point("after_rename")
                labels = self._labels(model.ctx if model.ctx is not None
                                      and not prop(model.ctx, "deleted", 0) else None)
                if label:
                    labels[label] = version
                ctx = self._fresh_context(
                    model, user, model.source, serving_name=serving_name, serving=1,
                    current_version=version, labels=json.dumps(labels, sort_keys=True),
                )
                art = pb.Artifact(type_id=self.store.type_id("artifact", DEPLOYMENT), uri=target,
                                  state=pb.Artifact.LIVE)
                for key, value in {
                    "serving_name": serving_name, "model_name": name, "version": version,
                    "user": user, "deployed_at": time.time(), "source_uri": source,
                    "source_artifact_id": int(inputs[0].id),
                }.items():
                    set_prop(art, key, value)
                self._record(ctx, "deploy", user, version, label or "", f"from {source}",
                             inputs=inputs, outputs=[art])
                files.crash_point("after_record")
        finally:
            if os.path.isdir(staging):
                files.remove_tree(staging)
        return DeployResult("on", version, serving_name)

    # ------------------------------------------------------------------ stop / rollback / label
    def stop(self, name: str, user: str | None = None) -> None:
        """Take every version out of serving; the files stay for rollback."""
        user = user or default_user()
        with self.store.lock.hold():
            model = self._locked_model(name)
            if model.ctx is None or not self._deployments(self._serving_name(model)):
                raise ConflictError(f"model {name!r} was never deployed; nothing to stop")
            ctx = self._fresh_context(model, user, model.source, serving=0)
            self._record(ctx, "stop", user)

    def rollback(self, name: str, version: int | None = None, user: str | None = None) -> int:
        """Make an earlier deployed version current (and serving) again; returns it."""
        user = user or default_user()
        with self.store.lock.hold():
            model = self._locked_model(name)
            serving_name = self._serving_name(model)
            versions = sorted(int(prop(a, "version")) for a in self._deployments(serving_name))
            if model.ctx is None or not versions:
                raise ConflictError(f"model {name!r} was never deployed; nothing to roll back to")
            current = int(prop(model.ctx, "current_version", 0) or 0)
            if version is None:
                order = [v for v in serving_order(self._history_of(model)) if v in versions]
                earlier = order[:-1] if order and order[-1] == current else order
                if not earlier:  # no serving history (older registries): the version number
                    earlier = [v for v in versions if v < current]
                if not earlier:
                    raise ConflictError(
                        f"model {name!r} has no version served before {current}; "
                        f"deployed: {versions}")
                version = earlier[-1]
            if version not in versions:
                raise NotFoundError(f"model {name!r} has no version {version}; deployed: {versions}")
            path = os.path.join(self.serving_dir, serving_name, str(version))
            if not os.path.isdir(path):
                raise ConflictError(f"version {version} of {name!r} has no files at {path}")
            ctx = self._fresh_context(model, user, model.source, serving=1, current_version=version)
            self._record(ctx, "rollback", user, version, detail=f"from {current}")
            return version

    def label(self, name: str, label: str, version: int, user: str | None = None) -> None:
        """Point ``label`` at ``version`` (one atomic write; moves it if it pointed elsewhere)."""
        user = user or default_user()
        check_label(label)
        with self.store.lock.hold():
            model = self._locked_model(name)
            versions = {int(prop(a, "version")) for a in self._deployments(self._serving_name(model))}
            if version not in versions:
                raise NotFoundError(
                    f"model {name!r} has no deployed version {version}; deployed: {sorted(versions)}")
            labels = self._labels(model.ctx)
            before = labels.get(label)
            labels[label] = version
            ctx = self._fresh_context(model, user, model.source,
                                      labels=json.dumps(labels, sort_keys=True))
            self._record(ctx, "label", user, version, label,
                         detail=f"moved from {before}" if before else "")

    # ------------------------------------------------------------------ delete
    def delete(self, name: str, force: bool = False, user: str | None = None) -> None:
        """Remove the model's registry entry, its deployed versions and its imported files.

        A pipeline model's history in MLMD (TFX's records) is kept; the model disappears until the
        pipeline trains a new one. Refuses while serving unless ``force``.
        """
        user = user or default_user()
        with self.store.lock.hold():
            model = self._locked_model(name)
            if model.ctx is not None and prop(model.ctx, "serving", 0) and not force:
                raise ConflictError(
                    f"model {name!r} is serving; `mlmodel stop {name}` first or pass --force")
            serving_name = self._serving_name(model)
            doomed = [a for a in self._deployments(serving_name) if prop(a, "model_name") == name]
            imported = self._imported_version(model)
            if imported is not None:
                doomed.append(imported)
            latest = self._latest_model(model)
            hidden = int(latest.id) if latest is not None else model.hidden_before
            ctx = self._fresh_context(model, user, model.source)
            for key, value in {"deleted": 1, "serving": 0, "current_version": 0, "labels": "{}",
                               "hidden_before": hidden, "serving_name": ""}.items():
                set_prop(ctx, key, value)
            for artifact in doomed:
                artifact.state = pb.Artifact.DELETED
            self._record(ctx, "delete", user, detail=f"removed {len(doomed)} artifacts",
                         inputs=doomed)
            files.remove_tree(os.path.join(self.serving_dir, serving_name))
            if imported is not None and imported.uri.startswith(self._managed_root()):
                files.remove_tree(imported.uri)

    # ------------------------------------------------------------------ import / export
    def _managed_root(self) -> str:
        return os.path.join(self.serving_dir, ".registry", "models")

    def import_model(self, name: str, archive: str, type: str = "tf",
                     category: str = "classification", algorithm: str = "deep",
                     format: str = "saved_model", user: str | None = None,
                     max_member_bytes: int | None = None, validate: bool = True) -> int:
        """Register a model from a tar archive; returns the new ModelVersion artifact id."""
        from registry import archive as archives

        user = user or default_user()
        check_name(name)
        if type != "tf":
            raise InputError(f"type={type!r} is not supported here; only type=tf can be served")
        if format not in ("saved_model", "h5"):
            raise InputError(f"format={format!r}: use saved_model or h5")
        parent = os.path.join(self._managed_root(), name)
        extracted = archives.extract_model(archive, parent, format, max_member_bytes)
        try:
            filename = SAVED_MODEL_FILE if format == "saved_model" else "model.h5"
            class_names: list[str] = []
            if validate:
                from registry import validate as validation

                class_names = validation.check_model(extracted.root, format)
            with self.store.lock.hold():
                self.store.ensure_types()
                existing = self.store.read(
                    lambda m: m.get_context_by_type_and_name(REGISTERED_MODEL, name), "reading")
                pctx = self.store.read(
                    lambda m: m.get_context_by_type_and_name(pipeline_models.PIPELINE_CONTEXT,
                                                             name), "reading") if \
                    self._has_pipeline_type() else None
                model = _Model(name, existing, pctx,
                               int(prop(existing, "hidden_before", 0) or 0) if existing else 0)
                if (existing is not None and not prop(existing, "deleted", 0)) or (
                        pctx is not None and self._latest_model(model) is not None):
                    raise ConflictError(
                        f"model {name!r} already exists; delete it first or choose another name")
                final = os.path.join(parent, os.path.basename(extracted.staging)[len(
                    files.TMP_PREFIX):])
                os.rename(extracted.staging, final)
                uri = os.path.join(final, extracted.relative_root)
                model.pipeline_ctx = None
                ctx = self._fresh_context(model, user, "import", type=type, category=category,
                                          algorithm=algorithm, format=format)
                set_prop(ctx, "source", "import")
                art = pb.Artifact(type_id=self.store.type_id("artifact", MODEL_VERSION), uri=uri,
                                  state=pb.Artifact.LIVE)
                for key, value in {"model_name": name, "format": format, "type": type,
                                   "filename": filename, "created_at": time.time(), "user": user,
                                   "class_names": json.dumps(class_names)}.items():
                    set_prop(art, key, value)
                self._record(ctx, "import", user, detail=f"from {os.path.abspath(archive)}",
                             outputs=[art])
                version = self._imported_version(self._model(name))
                return int(version.id)
        finally:
            if os.path.isdir(extracted.staging):
                files.remove_tree(extracted.staging)

    def export_model(self, name: str, path: str) -> ExportResult:
        """Write the model's files (its latest blessed push, or its import) as a tar, atomically."""
        from registry import archive as archives

        model = self._model(name)
        source, _ = self._deploy_source(model)
        size, digest = archives.write_tar(source, path)
        return ExportResult(os.path.abspath(path), size, digest)

    def record_evaluation(self, name: str, version: int | None, model_artifact: Any,
                          data: str, layout: str, result: dict[str, Any],
                          user: str | None = None) -> int:
        """Store an ``mlmodel eval`` result: an Evaluation artifact made from the model version's
        artifact and a Dataset artifact for the data, by an ``eval`` Action in the history."""
        user = user or default_user()
        with self.store.lock.hold():
            self.store.ensure_types()
            model = self._locked_model(name)
            now = time.time()
            dataset = pb.Artifact(type_id=self.store.type_id("artifact", DATASET),
                                  uri=data if storage.is_remote(data)
                                  else os.path.abspath(os.path.expanduser(data)),
                                  state=pb.Artifact.LIVE)
            set_prop(dataset, "layout", layout)
            set_prop(dataset, "examples", int(result["examples"]))
            evaluation = pb.Artifact(type_id=self.store.type_id("artifact", EVALUATION),
                                     uri=dataset.uri, state=pb.Artifact.LIVE)
            for key, value in {
                "model_name": name, "version": int(version or 0), "data": data,
                "examples": int(result["examples"]), "rate": float(result["rate"]),
                "repeat": int(result["repeat"]), "accuracy": float(result["accuracy"]),
                "loss": float(result["loss"]), "result": json.dumps(result),
                "user": user, "created_at": now,
            }.items():
                set_prop(evaluation, key, value)
            ctx = self._fresh_context(model, user, model.source)
            inputs = [a for a in (model_artifact, dataset) if a is not None]
            self._record(ctx, "eval", user, int(version or 0),
                         detail=f"accuracy {result['accuracy']:.4f} on {result['examples']} "
                                f"examples of {data}", inputs=inputs, outputs=[evaluation])
            found = self._evaluations(self._model(name), limit=1)
            return int(found[0]["evaluation_artifact_id"]) if found else 0

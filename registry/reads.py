"""The registry's reads: models, versions, history, the server's snapshot, evaluations.

``RegistryReader`` answers every question the CLI, the model server and the console ask; it never
takes the write lock and never writes (the list index beside the database is a cache). Writes are
``registry.writes.Registry``, which extends it.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import json
import os
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import mlmd as keys
from contracts import settings
from contracts.examples import IMAGE_KEY, LABEL_KEY
from contracts.signatures import DICTIONARY_RELPATH, SAVED_MODEL_FILE, SAVED_MODEL_SUBDIR
from metastore import pipeline_models
from metastore.errors import ConflictError, InputError, NotFoundError
from metastore.store import (
    DEPLOYMENT,
    EVALUATION,
    MODEL_VERSION,
    REGISTERED_MODEL,
    REGISTRY_ACTION,
    Backend,
    Store,
    parse_backend,
    prop,
)
from registry import list_index
from registry.entities import (
    DEFAULT_LIST_LIMIT,
    LIST_ORDERS,
    NAME_RE,
    DeployedVersion,
    HistoryEntry,
    ModelPage,
    ModelRow,
    ModelSummary,
    _Model,
    check_name,
)


def _encode_token(options: dict[str, Any], key: Any) -> str:
    """An opaque page token: the options it was made for and the last row's sort key."""
    text = json.dumps({**options, "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_token(token: str, options: dict[str, Any]) -> tuple[Any, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, last_id = data["k"]
        if not isinstance(last_id, int):
            raise ValueError
    except (ValueError, TypeError, KeyError):
        raise InputError(f"page token {token!r} is not valid; take it from the previous page's "
                         "next_page_token") from None
    if any(data.get(k) != v for k, v in options.items()):
        raise InputError("the page token was made for other --order-by/--filter/--serving "
                         "options; repeat them as on the first page")
    return (key, last_id)


def registry_location(metadata: str | None, serving_dir: str | None) -> tuple[Backend, str]:
    """The backend and absolute serving dir: the arguments, else $MNIST_TFX_METADATA /
    $MNIST_TFX_SERVING_DIR, else ``runs/metadata.sqlite`` and ``serving_model``."""
    return (parse_backend(metadata),
            os.path.abspath(serving_dir or settings.default_serving_dir()))


def open_reader(metadata: str | None = None, serving_dir: str | None = None) -> RegistryReader:
    """The registry's reads only (as ``registry.api.open_registry``, without the writes)."""
    return RegistryReader(*registry_location(metadata, serving_dir))


class RegistryReader:
    """Reads of the model registry. All methods are safe to call from many processes at once."""

    def __init__(self, backend: Backend, serving_dir: str) -> None:
        self.backend = backend
        self.serving_dir = serving_dir
        self.store = Store(backend)
        self._marker_memo: tuple[Any, tuple[Any, ...]] | None = None  # see change_marker

    # ------------------------------------------------------------------ reading helpers
    def _contexts(self) -> dict[str, Any]:
        return {c.name: c for c in self.store.by_type("context", REGISTERED_MODEL)}

    def _models(self) -> list[_Model]:
        """Every visible model: registered (not deleted) and pipelines with a model since.

        Two MLMD calls whatever the registry's size: the registry's contexts, and the pipeline
        contexts that have a ``Model`` artifact (MLMD joins the attributions); plus one per deleted
        model whose pipeline may have trained again, and one for registered models' pipelines.
        """
        contexts = self._contexts()
        with_models = {c.name: c for c in self._pipelines_with_models()}
        others = [n for n in contexts if n not in with_models]
        pipelines = dict(with_models)
        if others:
            pipelines.update({c.name: c for c in self._pipelines_named(others)})
        result: dict[str, _Model] = {}
        for name, ctx in contexts.items():
            hidden = int(prop(ctx, "hidden_before", 0) or 0)
            model = _Model(name, ctx, pipelines.get(name), hidden)
            if not prop(ctx, "deleted", 0) or (
                name in with_models and self._latest_model(model) is not None
            ):
                result[name] = model
        for name, pctx in with_models.items():
            if name not in result and name not in contexts:
                result[name] = _Model(name, None, pctx)
        return sorted(result.values(), key=lambda m: m.id)

    def _pipelines_with_models(self) -> list[Any]:
        """Pipeline contexts with at least one ``Model`` artifact (one query)."""
        options = metadata_store.ListOptions(filter_query=(
            f"type = '{pipeline_models.PIPELINE_CONTEXT}' AND artifacts_a.type = 'Model'"))
        return self._list_contexts(options)

    def _pipelines_named(self, names: list[str]) -> list[Any]:
        safe = [n for n in names if NAME_RE.match(n)]
        if not safe:
            return []
        quoted = ", ".join(f"'{n}'" for n in safe)
        options = metadata_store.ListOptions(filter_query=(
            f"type = '{pipeline_models.PIPELINE_CONTEXT}' AND name IN ({quoted})"))
        return self._list_contexts(options)

    def _list_contexts(self, options: Any) -> list[Any]:
        return self.store.listed("context", options, "reading models")

    def _context_named(self, type_name: str, name: str) -> Any:
        def call(m: Any) -> Any:
            try:
                return m.get_context_by_type_and_name(type_name, name)
            except mlmd_errors.NotFoundError:
                return None

        return self.store.read(call, "reading " + name)

    def _model(self, name: str) -> _Model:
        """One model, reading only its own contexts (and its newest Model if need be)."""
        check_name(name)
        ctx = self._context_named(REGISTERED_MODEL, name)
        pctx = self._context_named(pipeline_models.PIPELINE_CONTEXT, name)
        hidden = int(prop(ctx, "hidden_before", 0) or 0) if ctx is not None else 0
        model = _Model(name, ctx, pctx, hidden)
        visible = (ctx is not None and not prop(ctx, "deleted", 0)) or (
            pctx is not None and self._latest_model(model) is not None
        )
        if not visible:
            raise NotFoundError(f"model {name!r} not found; `mlmodel list` shows the models")
        return model

    def _has_pipeline_type(self) -> bool:
        return any(t.name == pipeline_models.PIPELINE_CONTEXT for t in self._context_types())

    def _context_types(self) -> list[Any]:
        return list(self.store.read(lambda m: m.get_context_types(), "reading context types"))

    def _latest_model(self, model: _Model) -> Any:
        if model.pipeline_ctx is None:
            return None
        if not model.latest_known:
            model.latest = pipeline_models.latest_artifact(self.store, "Model", model.name,
                                                           model.hidden_before)
            model.latest_known = True
        return model.latest

    def _deployments(self, serving_name: str | None = None) -> list[Any]:
        """LIVE Deployment artifacts (optionally of one serving name, read alone), by version."""
        if serving_name is None:
            found = [a for a in self.store.by_type("artifact", DEPLOYMENT)
                     if a.state == pb.Artifact.LIVE]
        elif NAME_RE.match(serving_name):
            options = metadata_store.ListOptions(filter_query=(
                f"type = '{DEPLOYMENT}' AND state = LIVE AND "
                f"properties.serving_name.string_value = '{serving_name}'"))
            found = self.store.listed("artifact", options, "reading deployments")
        else:  # a name the filter syntax cannot quote safely (never made by deploy)
            found = [a for a in self.store.by_type("artifact", DEPLOYMENT)
                     if a.state == pb.Artifact.LIVE and prop(a, "serving_name") == serving_name]
        return sorted(found, key=lambda a: (prop(a, "serving_name"), prop(a, "version")))

    def _imported_version(self, model: _Model) -> Any:
        if model.ctx is None:
            return None
        found = [a for a in self.store.read(lambda m: m.get_artifacts_by_context(model.ctx.id),
                                            "reading versions")
                 if a.type == MODEL_VERSION and a.state == pb.Artifact.LIVE]
        return max(found, key=lambda a: a.id) if found else None

    @staticmethod
    def _labels(ctx: Any) -> dict[str, int]:
        if ctx is None:
            return {}
        try:
            value = json.loads(prop(ctx, "labels", "") or "{}")
        except ValueError:
            return {}
        return {str(k): int(v) for k, v in value.items()}

    def _serving_name(self, model: _Model, user: str | None = None) -> str:
        if model.ctx is not None and prop(model.ctx, "serving_name", "") and not prop(
            model.ctx, "deleted", 0
        ):
            return str(prop(model.ctx, "serving_name"))
        return f"{user or self._owner(model)}_{model.name}"

    def _owner(self, model: _Model) -> str:
        if model.ctx is not None and prop(model.ctx, "user", "") and not prop(model.ctx, "deleted", 0):
            return str(prop(model.ctx, "user"))
        latest = self._latest_model(model)
        if latest is not None and prop(latest, "user", ""):
            return str(prop(latest, "user"))
        return "root"

    # ------------------------------------------------------------------ the server's view
    def change_marker(self) -> tuple[Any, ...] | None:
        """Changes when the registry's records do: the newest ``mlmodel.Action``'s id. One
        one-row query while nothing was written.

        Every registry write records exactly one Action, under the write lock, so ids grow in
        commit order; a poller re-reads ``serving_snapshot()`` only when this moves. None while
        there is no database yet (nothing to compare; the snapshot is empty and cheap).
        """
        # The newest execution of any type first: one row, no type filter (MLMD's type filters
        # scan: 30 ms at 10,000 models). Only when it moved is the newest Action looked up.
        any_newest = list_index.newest(self.store, "execution")
        if self.store.missing_database:
            return None
        if self._marker_memo is not None and self._marker_memo[0] == any_newest:
            return self._marker_memo[1]
        options = metadata_store.ListOptions(
            filter_query=f"type = '{REGISTRY_ACTION}'",
            order_by=metadata_store.OrderByField.ID, is_asc=False, limit=1)
        newest = self.store.listed("execution", options, "reading the newest registry action")
        marker = (self.backend.display, int(newest[0].id) if newest else 0)
        self._marker_memo = (any_newest, marker)
        return marker

    def serving_snapshot(self, check_dirs: bool = True) -> list[DeployedVersion]:
        """Every deployed version and whether it should be served. Two MLMD queries, no TF.

        A version is served while its model is serving and it is the current version or a label
        points at it. Versions whose directory is missing are left out (unless ``check_dirs`` is
        False: a caller that caches the snapshot checks the directories on each use).
        """
        return self._snapshot_of(self.registered(), self._deployments(), check_dirs)

    def registered(self) -> dict[str, Any]:
        """Name -> RegisteredModel context of every model not deleted (one query; {} without a
        database)."""
        if self.store.missing_database:
            return {}
        return {c.name: c for c in self.store.by_type("context", REGISTERED_MODEL)
                if not prop(c, "deleted", 0)}

    def deployments(self, serving_name: str) -> list[Any]:
        """The LIVE Deployment records of one serving name, by version."""
        return self._deployments(serving_name)

    def labels(self, ctx: Any) -> dict[str, int]:
        """Label -> version of a RegisteredModel context (``registered()``), {} for None."""
        return self._labels(ctx)

    def _snapshot_of(self, contexts: dict[str, Any], deployments: list[Any],
                     check_dirs: bool = True) -> list[DeployedVersion]:
        result = []
        for art in deployments:
            ctx = contexts.get(prop(art, "model_name"))
            if ctx is None or prop(ctx, "serving_name") != prop(art, "serving_name"):
                continue
            version = int(prop(art, "version"))
            path = os.path.join(self.serving_dir, prop(art, "serving_name"), str(version))
            if check_dirs and not os.path.isdir(path):
                continue
            labels = tuple(sorted(k for k, v in self._labels(ctx).items() if v == version))
            current = version == int(prop(ctx, "current_version", 0) or 0)
            serving = bool(prop(ctx, "serving", 0)) and (current or bool(labels))
            result.append(DeployedVersion(
                serving_name=str(prop(art, "serving_name")), model_name=str(prop(art, "model_name")),
                version=version, path=path, labels=labels, serving=serving, current=current,
                deployed_at=float(prop(art, "deployed_at", 0.0) or 0.0),
            ))
        return result

    # ------------------------------------------------------------------ list / summary
    def list_models(self, limit: int | None = None, offset: int = 0,
                    page_token: str | None = None, name_contains: str | None = None,
                    serving: bool | None = None, order_by: str = "id") -> list[ModelRow]:
        """The models' rows (all of them by default); see ``list_page`` for the options."""
        return self.list_page(limit, offset, page_token, name_contains, serving, order_by).rows

    def list_page(self, limit: int | None = DEFAULT_LIST_LIMIT, offset: int = 0,
                  page_token: str | None = None, name_contains: str | None = None,
                  serving: bool | None = None, order_by: str = "id") -> ModelPage:
        """One page of models, as ``mlmodel list`` and a console show them.

        * ``order_by``: ``id`` (default) and ``name`` ascending, ``created`` and ``modified``
          newest first; ties broken by id.
        * ``name_contains``: case-insensitive substring of the name; ``serving``: only models
          that are (True) or are not (False) serving.
        * ``limit`` rows (None: all) from ``offset``, or after the row a ``page_token`` names.
          Tokens resume after the last row's sort key, so paging by id or name is complete and
          stable while models are deployed between page reads (each model exactly once).

        Cost: three one-row MLMD queries when nothing changed since the last read (the rows
        come from the list index, see ``registry.list_index``), plus the changed models' own
        records otherwise; the whole registry only on a first read or after many changes.
        """
        if order_by not in LIST_ORDERS:
            raise InputError(f"order by {order_by!r}: choose from {', '.join(LIST_ORDERS)}")
        if limit is not None and limit < 1:
            raise InputError(f"limit {limit}: give a number >= 1")
        if offset < 0:
            raise InputError(f"offset {offset}: give a number >= 0")
        options = {"o": order_by, "f": (name_contains or "").lower(), "s": serving}
        cursor = _decode_token(page_token, options) if page_token else None
        rows = self._all_rows()  # plain dicts: only the page's become ModelRows
        if name_contains:
            needle = name_contains.lower()
            rows = [r for r in rows if needle in r["name"].lower()]
        if serving is not None:
            rows = [r for r in rows if bool(r["serving"]) == serving]
        keys = sorted((self._sort_key(r, order_by), r["id"]) for r in rows)
        by_id = {r["id"]: r for r in rows}
        start = bisect.bisect_right(keys, cursor) if cursor is not None else min(offset, len(keys))
        end = len(keys) if limit is None else min(len(keys), start + limit)
        token = _encode_token(options, keys[end - 1]) if end < len(keys) and end > start else None
        return ModelPage([ModelRow(**by_id[i]) for _, i in keys[start:end]], len(keys), start,
                         token)

    @staticmethod
    def _sort_key(row: dict[str, Any], order_by: str) -> Any:
        if order_by == "id":
            return 0
        if order_by == "name":
            return row["name"]
        return -(row["created"] if order_by == "created" else row["modified"])

    def _all_rows(self) -> list[dict[str, Any]]:
        """Every visible model's row, from the list index when it is current (see list_index).

        Current index: three one-row queries. Changed since: the touched models' own records.
        Otherwise (first read, a recreated database, many changes): every model, in a few
        queries, and the index is written for the next read.
        """
        markers = list_index.read_markers(self.store)  # before the rows: see list_index
        if self.store.missing_database:
            return []
        path = list_index.index_path(self.backend)
        cached = list_index.load(path, self.backend)
        if cached is not None and cached.markers == markers:
            return cached.rows
        rows = None
        if cached is not None:
            names = list_index.touched_names(self.store, cached.markers, markers)
            if names is not None:
                rows = self._patched_rows(cached.rows, names)
        if rows is None:
            models = self._models()
            self._prefetch_latest(models)
            rows = [dataclasses.asdict(self._row(m)) for m in models]
        list_index.save(path, list_index.ListIndex(list_index.identity(self.backend), markers, rows))
        return rows

    def _patched_rows(self, rows: list[dict[str, Any]], names: set[str]) -> list[dict[str, Any]] | None:
        fresh: dict[str, dict[str, Any] | None] = {}
        for name in names:
            if not NAME_RE.match(name):
                return None  # a name only the full read handles (never made by the registry)
            try:
                fresh[name] = dataclasses.asdict(self._row(self._model(name)))
            except NotFoundError:
                fresh[name] = None
        return list_index.patched(rows, fresh)

    def _prefetch_latest(self, models: list[_Model]) -> None:
        """Find the models' newest Model artifacts with one query instead of one each.

        A few models: the Models of those pipelines (a filter on their names); many: every Model.
        Our Trainer records ``model_name`` (= the pipeline name) on its Model artifact; models
        whose artifacts lack it (other pipelines' Trainers) keep the per-model query.
        """
        pending = {m.name: m for m in models if m.pipeline_ctx is not None and not m.latest_known}
        if len(pending) < 2:
            return
        names = [n for n in pending if NAME_RE.match(n)]
        if len(pending) > 500 or not names:
            candidates = self.store.by_type("artifact", "Model")
        else:
            quoted = ", ".join(f"'{n}'" for n in names)
            options = metadata_store.ListOptions(filter_query=(
                f"type = 'Model' AND contexts_a.type = '{pipeline_models.PIPELINE_CONTEXT}' "
                f"AND contexts_a.name IN ({quoted})"))
            candidates = self.store.read(lambda m: m.get_artifacts(list_options=options),
                                         "reading models")
        newest: dict[str, Any] = {}
        for artifact in candidates:
            name = str(prop(artifact, "model_name", "") or "")
            model = pending.get(name)
            if model is None or artifact.id <= model.hidden_before:
                continue
            if name not in newest or artifact.id > newest[name].id:
                newest[name] = artifact
        for name, artifact in newest.items():
            pending[name].latest, pending[name].latest_known = artifact, True

    def _row(self, model: _Model) -> ModelRow:
        ctx = model.ctx if model.ctx is not None and not prop(model.ctx, "deleted", 0) else None
        latest = self._latest_model(model)
        times = [t for t in (
            prop(ctx, "created_at", 0.0) if ctx is not None else 0.0,
            model.pipeline_ctx.create_time_since_epoch / 1000.0
            if model.pipeline_ctx is not None and not model.hidden_before else 0.0,
            latest.create_time_since_epoch / 1000.0 if latest is not None else 0.0,
        ) if t]
        modified = max([t for t in (
            prop(ctx, "updated_at", 0.0) if ctx is not None else 0.0,
            latest.create_time_since_epoch / 1000.0 if latest is not None else 0.0,
        ) if t] or [0.0])
        return ModelRow(
            id=model.id, user=self._owner(model), name=model.name,
            type=str(prop(ctx, "type", "") or "tf") if ctx is not None else "tf",
            category=str(prop(ctx, "category", "") or "classification") if ctx is not None
            else "classification",
            algorithm=self._algorithm(model, ctx, latest),
            serving=bool(ctx is not None and prop(ctx, "serving", 0)),
            created=min(times) if times else 0.0, modified=modified,
        )

    @staticmethod
    def _algorithm(model: _Model, ctx: Any, latest: Any) -> str:
        if ctx is not None and prop(ctx, "algorithm", ""):
            return str(prop(ctx, "algorithm"))
        if latest is not None:
            hparams = pipeline_models.model_facts(latest)["hparams"]
            if isinstance(hparams, dict) and hparams.get("algorithm"):
                return str(hparams["algorithm"])
        return "deep"

    def summary(self, name: str) -> ModelSummary:
        model = self._model(name)
        row = self._row(model)
        ctx = model.ctx if model.ctx is not None and not prop(model.ctx, "deleted", 0) else None
        lineage: dict[str, Any] = {}
        parameter: dict[str, Any] = {}
        evaluation: dict[str, Any] = {}
        train_cnt = elapsed = None
        training: dict[str, Any] = {}
        class_names: list[str] = []
        filename, fmt = SAVED_MODEL_FILE, "saved_model"
        grid_info: dict[str, Any] | None = None
        files_dir = ""  # the SavedModel directory whose assets.extra/dict.tsv is looked for
        if model.source == "pipeline":
            latest = self._latest_model(model)
            state = pipeline_models.trainer_state(self.store, name)
            if latest is not None:
                cand = pipeline_models.candidate(self.store, latest)
                facts = pipeline_models.model_facts(latest)
                parameter, class_names = facts["hparams"], facts["class_names"]
                train_cnt, elapsed = facts["train_examples"], facts["train_seconds"]
                training = facts["budget"] if isinstance(facts["budget"], dict) else {}
                evaluation = cand.evaluation
                trainer = cand.trainer_execution
                grid_info = pipeline_models.grid_info(self.store, trainer)
                files_dir = cand.pushed_dir or os.path.join(latest.uri, SAVED_MODEL_SUBDIR)
                lineage = {
                    "pipeline": name,
                    "pipeline_run": cand.pipeline_run,
                    "model_artifact_id": cand.model_id,
                    "model_uri": latest.uri,
                    "trainer_execution_id": int(trainer.id) if trainer is not None else None,
                    "blessing_artifact_id": int(cand.blessing.id) if cand.blessing else None,
                    "blessed": cand.blessed,
                    # TFX's InfraValidator: did `serving start` load it and answer (None: not run)
                    "infra_blessing_artifact_id": (int(cand.infra_blessing.id)
                                                   if cand.infra_blessing else None),
                    "infra_blessed": cand.infra_blessed,
                    "infra_failure": cand.infra_failure.get("reason", ""),
                    "pushed_model_artifact_id": int(cand.pushed.id) if cand.pushed else None,
                    "pushed_destination": cand.pushed_dir,
                }
        else:
            version = self._imported_version(model)
            state = self._imported_state(version)
            if version is not None:
                files_dir = version.uri
                fmt = str(prop(version, "format", "") or fmt)
                filename = str(prop(version, "filename", "") or filename)
                try:
                    class_names = json.loads(prop(version, "class_names", "") or "[]")
                except ValueError:
                    class_names = []
                lineage = {"model_version_artifact_id": int(version.id), "uri": version.uri}
        labels = self._labels(ctx)
        serving_name = self._serving_name(model)
        versions = [int(prop(a, "version")) for a in self._deployments(serving_name)
                    if prop(a, "model_name") == name]
        return ModelSummary(
            id=row.id, user=row.user, name=name, filename=filename, format=fmt, type=row.type,
            category=row.category, algorithm=row.algorithm,
            feature=str(prop(ctx, "feature", "") or IMAGE_KEY) if ctx is not None else IMAGE_KEY,
            label=(str(prop(ctx, "label_column", "") or LABEL_KEY) if ctx is not None
                   else LABEL_KEY),
            parameter=parameter if isinstance(parameter, dict) else {},
            evaluation=evaluation if isinstance(evaluation, dict) else {},
            train_cnt=train_cnt, elapsed=elapsed, dictionary=_dictionary_file(files_dir),
            class_names=list(class_names), cdate=row.created, mdate=row.modified,
            serving=row.serving, serving_name=serving_name, state=state, source=model.source,
            current_version=int(prop(ctx, "current_version", 0) or 0) if ctx is not None else 0,
            labels=labels, versions=versions, lineage=lineage, training=training,
            cross_validation=self._evaluations(model), grid_info=grid_info,
        )

    def _imported_state(self, version: Any) -> str:
        """An imported model's state: that of the ``import`` that stored its files (READY when
        none did), ERROR when those files are gone."""
        from datasources import storage

        if version is None:
            return "READY"
        state = pipeline_models.execution_state(pipeline_models.producer(self.store, version))
        if state == "DONE" and not storage.is_remote(version.uri) and \
                not os.path.isdir(version.uri):
            return "ERROR"
        return state

    def versions(self, name: str) -> list[DeployedVersion]:
        """The deployed versions of one model (served or not), as the server would see them.

        Reads only this model's context and deployments.
        """
        model = self._model(name)
        ctx = model.ctx
        if ctx is None or prop(ctx, "deleted", 0) or not prop(ctx, "serving_name", ""):
            return []
        deployments = self._deployments(str(prop(ctx, "serving_name")))
        return [v for v in self._snapshot_of({name: ctx}, deployments) if v.model_name == name]

    def history(self, name: str) -> list[HistoryEntry]:
        """The model's registry actions, oldest first (see ``serving_order`` for what served)."""
        return self._history_of(self._model(name))

    def _history_of(self, model: _Model) -> list[HistoryEntry]:
        if model.ctx is None:
            return []
        executions = self.store.read(lambda m: m.get_executions_by_context(model.ctx.id),
                                     "reading history")
        entries = []
        for e in sorted(executions, key=lambda e: e.id):
            if e.type != REGISTRY_ACTION:
                continue
            entries.append(HistoryEntry(
                id=int(e.id), at=float(prop(e, "at", 0.0) or 0.0), action=str(prop(e, "action", "")),
                version=int(prop(e, "version", 0) or 0), label=str(prop(e, "label", "") or ""),
                user=str(prop(e, "user", "") or ""),
                current_version=int(prop(e, "current_version", 0) or 0),
                serving=bool(prop(e, "serving", 0)), detail=str(prop(e, "detail", "") or ""),
            ))
        return entries

    def _deploy_source(self, model: _Model) -> tuple[str, list[Any]]:
        """The directory to deploy and the artifacts it came from."""
        if model.source == "pipeline":
            pushed = pipeline_models.latest_pushed(self.store, model.name, model.hidden_before)
            if pushed is None:
                raise ConflictError(
                    f"model {model.name!r} has no blessed, pushed model yet; run the pipeline "
                    "until the Evaluator blesses a model (Pusher then pushes it)")
            inputs = [pushed]
            trained = pipeline_models.model_of_push(self.store, pushed)
            if trained is not None:
                inputs.append(trained)
            return str(prop(pushed, keys.PUSHED_DESTINATION)), inputs
        version = self._imported_version(model)
        if version is None:
            raise ConflictError(f"model {model.name!r} has no stored files; import it again")
        return version.uri, [version]

    # ------------------------------------------------------------------ offline eval / predict
    def model_files(self, name: str, version: int | None = None,
                    label: str | None = None) -> tuple[str, int | None, Any]:
        """(directory, deployed version or None, the artifact it is) of the model version that
        ``mlmodel eval``/``predict`` load: ``version`` or ``label`` among the deployed versions,
        else the current deployed version, else the files a deploy would copy (the newest
        pushed model, or the imported one)."""
        model = self._model(name)
        deployed = self.versions(name)
        if label is not None:
            chosen = [v for v in deployed if label in v.labels]
            if not chosen:
                known = sorted({lab for v in deployed for lab in v.labels})
                raise NotFoundError(f"model {name!r} has no label {label!r}; labels: "
                                    f"{', '.join(known) or 'none'} (`mlmodel label` sets one)")
        elif version is not None:
            chosen = [v for v in deployed if v.version == version]
            if not chosen:
                raise NotFoundError(f"model {name!r} has no deployed version {version}; deployed: "
                                    f"{[v.version for v in deployed] or 'none'}")
        else:
            chosen = [v for v in deployed if v.current]
        if chosen:
            picked = chosen[0]
            if not os.path.isdir(picked.path):
                raise ConflictError(f"version {picked.version} of {name!r} has no files at "
                                    f"{picked.path}; `mlmodel doctor` explains")
            artifact = next((a for a in self._deployments(picked.serving_name)
                             if int(prop(a, "version")) == picked.version), None)
            return picked.path, picked.version, artifact
        path, inputs = self._deploy_source(model)
        return path, None, inputs[0]

    def evaluations(self, name: str, limit: int = 5) -> list[dict[str, Any]]:
        """The newest ``mlmodel eval`` results of ``name``, newest first."""
        return self._evaluations(self._model(name), limit)

    def _evaluations(self, model: _Model, limit: int = 5) -> list[dict[str, Any]]:
        if model.ctx is None:
            return []
        options = metadata_store.ListOptions(
            filter_query=f"type = '{EVALUATION}' AND contexts_a.id = {int(model.ctx.id)}",
            order_by=metadata_store.OrderByField.ID, is_asc=False, limit=limit)
        found = self.store.listed("artifact", options, "reading evaluations")
        rows = []
        for artifact in found:
            rows.append({
                "evaluation_artifact_id": int(artifact.id), "data": prop(artifact, "data", ""),
                "version": int(prop(artifact, "version", 0) or 0) or None,
                "examples": int(prop(artifact, "examples", 0) or 0),
                "rate": float(prop(artifact, "rate", 0.0) or 0.0),
                "repeat": int(prop(artifact, "repeat", 0) or 0),
                "accuracy": float(prop(artifact, "accuracy", 0.0) or 0.0),
                "loss": float(prop(artifact, "loss", 0.0) or 0.0),
                "user": prop(artifact, "user", ""),
                "at": float(prop(artifact, "created_at", 0.0) or 0.0),
            })
        return rows


def _dictionary_file(saved_model_dir: str) -> str | None:
    """``dict.tsv`` when the model's files carry ``assets.extra/dict.tsv``, else None."""
    if not saved_model_dir:
        return None
    from datasources import storage  # local paths: os.path, no Beam

    found = storage.isfile(storage.join(saved_model_dir, DICTIONARY_RELPATH))
    return os.path.basename(DICTIONARY_RELPATH) if found else None

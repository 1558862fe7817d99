"""Monitor reports in ML Metadata, the way ``mlmodel eval`` stores its evaluations.

One ``mlmodel monitor`` run writes, in one transaction under the registry write lock:

* an artifact ``mlmodel.MonitorReport`` (uri: the version's capture folder) with the headline
  numbers as properties and the whole JSON report in ``report``;
* a ``monitor`` Action in the model's history, whose inputs are the version's
  ``mlmodel.Deployment`` and the training ``Examples`` it was compared with, and whose output is
  the report: the lineage reads version -> report and report -> training data.

``mlmodel summary`` and the console read the newest report back with ``latest_reports``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from metastore.store import prop, retry_busy, set_prop

MONITOR_REPORT = "mlmodel.MonitorReport"
MONITOR_PROPERTIES = {
    "model_name": pb.STRING, "version": pb.INT, "serving_name": pb.STRING,
    "requests": pb.INT, "training_examples": pb.INT, "drifted": pb.INT,
    "drifted_features": pb.STRING, "low_confidence_share": pb.DOUBLE, "since": pb.STRING,
    "report": pb.STRING, "user": pb.STRING, "created_at": pb.DOUBLE,
}


def _type_id(store: Any) -> int:
    artifact_type = pb.ArtifactType(name=MONITOR_REPORT)
    for key, value in MONITOR_PROPERTIES.items():
        artifact_type.properties[key] = value
    mlmd = store.mlmd
    return int(retry_busy(lambda: mlmd.put_artifact_type(artifact_type, can_add_fields=True),
                          "registering the monitor report type"))


def record_report(reg: Any, report: dict[str, Any], deployment: Any, training: Any,
                  user: str) -> int:
    """Store ``report`` (see ``registry.monitor_run``) linked to its version; its artifact id."""
    name, version = report["model"], int(report["version"])
    with reg.store.lock.hold():
        reg.store.ensure_types()
        model = reg._locked_model(name)
        artifact = pb.Artifact(type_id=_type_id(reg.store), uri=report["capture_folder"],
                               state=pb.Artifact.LIVE)
        for key, value in {
            "model_name": name, "version": version, "serving_name": report["serving_name"],
            "requests": int(report["requests"]),
            "training_examples": int(report["training"]["examples"]),
            "drifted": int(bool(report["drifted"])),
            "drifted_features": ",".join(report["drifted"]),
            "low_confidence_share": float(report["low_confidence_share"]),
            "since": report["since"] or "", "report": json.dumps(report), "user": user,
            "created_at": time.time(),
        }.items():
            set_prop(artifact, key, value)
        ctx = reg._fresh_context(model, user, model.source)
        drifted = ", ".join(report["drifted"]) or "nothing"
        reg._record(ctx, "monitor", user, version,
                    detail=f"{report['requests']} requests; drifted: {drifted}",
                    inputs=[a for a in (deployment, training) if a is not None],
                    outputs=[artifact])
    found = latest_reports(reg, name, limit=1)
    return int(found[0]["report_artifact_id"]) if found else 0


def latest_reports(reg: Any, name: str, limit: int = 1, version: int | None = None,
                   full: bool = False) -> list[dict[str, Any]]:
    """The newest monitor reports of ``name`` (of ``version``), newest first; ``full`` adds the
    decoded JSON report under ``report``."""
    model = reg._model(name)
    if model.ctx is None:
        return []
    query = f"type = '{MONITOR_REPORT}' AND contexts_a.id = {int(model.ctx.id)}"
    if version is not None:
        query += f" AND properties.version.int_value = {int(version)}"
    options = metadata_store.ListOptions(filter_query=query, is_asc=False, limit=limit,
                                         order_by=metadata_store.OrderByField.ID)
    rows = []
    for artifact in reg.store.listed("artifact", options, "reading monitor reports"):
        row: dict[str, Any] = {
            "report_artifact_id": int(artifact.id),
            "version": int(prop(artifact, "version", 0) or 0),
            "requests": int(prop(artifact, "requests", 0) or 0),
            "drifted": [f for f in str(prop(artifact, "drifted_features", "")).split(",") if f],
            "low_confidence_share": float(prop(artifact, "low_confidence_share", 0.0) or 0.0),
            "since": str(prop(artifact, "since", "") or ""),
            "at": float(prop(artifact, "created_at", 0.0) or 0.0),
            "user": str(prop(artifact, "user", "") or ""),
        }
        if full:
            row["report"] = json.loads(str(prop(artifact, "report", "") or "{}"))
        rows.append(row)
    return rows


def report_by_id(reg: Any, name: str, artifact_id: int) -> dict[str, Any] | None:
    """The stored JSON report ``artifact_id`` of model ``name`` (None if it is not one)."""
    found = reg.store.read(lambda m: m.get_artifacts_by_id([int(artifact_id)]),
                           "reading the monitor report")
    if not found or found[0].type != MONITOR_REPORT or prop(found[0], "model_name") != name:
        return None
    return json.loads(str(prop(found[0], "report", "") or "{}"))


def summary_line(reg: Any, name: str) -> str:
    """One line for ``mlmodel summary``: the newest report, or that there is none."""
    rows = latest_reports(reg, name, limit=1)
    if not rows:
        return "never (mlmodel monitor NAME)"
    row = rows[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(row["at"]))
    drifted = ", ".join(row["drifted"]) or "no drift"
    return (f"{when}, version {row['version']}: {row['requests']} requests, {drifted} "
            f"(report {row['report_artifact_id']})")

"""The registry's typed API: what the CLI, the model server and the pipeline runner call.

State lives in ML Metadata, in the pipeline's own database:

* context ``mlmodel.RegisteredModel`` (one per model name): owner, type, category, algorithm, the
  serving name, whether it is serving, the current version and the labels (JSON label -> version);
* artifact ``mlmodel.Deployment``: one per ``<serving_dir>/<serving_name>/<N>`` directory;
* artifact ``mlmodel.ModelVersion``: an imported model (pipeline candidates are TFX ``Model``s);
* execution ``mlmodel.Action``: every deploy/stop/rollback/label/import/delete, with INPUT/OUTPUT
  events to the artifacts it used or made, attributed to the model's context (the history).

Each change is one ``put_execution`` call (context update + artifacts + events in one transaction)
made while holding the registry write lock, so changes are atomic and serialised.

Import it from here: ``open_registry``, and the records (``registry.entities``), the reads
(``registry.reads.RegistryReader``) and the writes (``registry.writes.Registry``) it gathers.
"""

from __future__ import annotations

from registry.entities import (
    DEFAULT_LIST_LIMIT,
    LIST_ORDERS,
    DeployedVersion,
    DeployResult,
    ExportResult,
    HistoryEntry,
    ModelPage,
    ModelRow,
    ModelSummary,
    check_label,
    check_name,
    default_user,
    serving_order,
)
from registry.reads import RegistryReader, registry_location
from registry.writes import Registry

__all__ = [
    "DEFAULT_LIST_LIMIT", "LIST_ORDERS", "DeployResult", "DeployedVersion", "ExportResult",
    "HistoryEntry", "ModelPage", "ModelRow", "ModelSummary", "Registry", "RegistryReader",
    "check_label", "check_name", "default_user", "open_registry", "serving_order",
]


def open_registry(metadata: str | None = None, serving_dir: str | None = None) -> Registry:
    """The registry on ``metadata`` (SQLite path or mysql:// URI) and ``serving_dir``.

    Defaults come from $MNIST_TFX_METADATA / $MNIST_TFX_SERVING_DIR, else ``runs/metadata.sqlite``
    and ``serving_model``. The database is opened lazily, on first use.
    """
    return Registry(*registry_location(metadata, serving_dir))

"""What the registry's reads return and its writes take: plain, frozen records and the rules
for names. No ML Metadata, no I/O (``default_user`` reads the environment)."""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass, field
from typing import Any

from metastore.errors import InputError
from metastore.store import prop

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class DeployedVersion:
    serving_name: str  # e.g. 'root_mnist'
    model_name: str
    version: int
    path: str  # absolute: <serving_dir>/<serving_name>/<version>
    labels: tuple[str, ...]  # labels pointing at this version
    serving: bool  # False once stopped (files kept for rollback)
    current: bool  # the version unlabelled/latest requests resolve to (rollback moves it)
    deployed_at: float  # unix time


@dataclass(frozen=True)
class DeployResult:
    result: str
    latest_version: int
    serving_name: str


@dataclass(frozen=True)
class ModelRow:
    """One line of ``mlmodel list``."""

    id: int
    user: str
    name: str
    type: str
    category: str
    algorithm: str
    serving: bool
    created: float
    modified: float


LIST_ORDERS = ("id", "name", "created", "modified")  # id, name: ascending; times: newest first
DEFAULT_LIST_LIMIT = 100


@dataclass(frozen=True)
class ModelPage:
    """One page of ``mlmodel list``: the rows, how many models match, where the next page starts."""

    rows: list[ModelRow]
    total: int  # models matching the filters (all pages)
    offset: int  # position of rows[0] among them
    next_page_token: str | None  # None on the last page


@dataclass(frozen=True)
class ModelSummary:
    """``mlmodel summary``: the seed's name/value rows plus versions and lineage."""

    id: int
    user: str
    name: str
    filename: str
    format: str
    type: str
    category: str
    algorithm: str
    feature: str
    label: str
    parameter: dict[str, Any]
    evaluation: dict[str, Any]
    train_cnt: int | None
    elapsed: float | None
    dictionary: str | None  # dict.tsv when the model's files carry assets.extra/dict.tsv
    class_names: list[str]
    cdate: float
    mdate: float
    serving: bool
    serving_name: str
    state: str
    source: str
    current_version: int
    labels: dict[str, int]
    versions: list[int]
    lineage: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # the Trainer's budget and outcome
    cross_validation: list[dict[str, Any]] = field(default_factory=list)  # `mlmodel eval`s
    grid_info: dict[str, Any] | None = None  # the Tuner's search (None: trained without one)


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    at: float
    action: str
    version: int
    label: str
    user: str
    current_version: int
    serving: bool
    detail: str


@dataclass(frozen=True)
class ExportResult:
    path: str
    size: int
    sha256: str


@dataclass
class _Model:
    """A model as the registry sees it: its registry context and/or its pipeline context."""

    name: str
    ctx: Any = None  # RegisteredModel context (may be None for a pipeline model never touched)
    pipeline_ctx: Any = None
    hidden_before: int = 0
    latest: Any = field(default=None, repr=False)  # newest visible Model artifact (memo)
    latest_known: bool = field(default=False, repr=False)

    @property
    def source(self) -> str:
        if self.ctx is not None and prop(self.ctx, "source", ""):
            return str(prop(self.ctx, "source"))
        return "pipeline" if self.pipeline_ctx is not None else "import"

    @property
    def id(self) -> int:
        if self.pipeline_ctx is not None and (self.ctx is None or self.source == "pipeline"):
            return int(self.pipeline_ctx.id)
        return int(self.ctx.id)


def serving_order(entries: list[HistoryEntry]) -> list[int]:
    """The versions that served, oldest first, as a plain ``rollback`` walks back through them.

    A deploy or a move of the current version pushes it; a rollback to a version already in the
    order drops what came after it (a rolled-back version is not returned to by the next plain
    rollback); a delete starts over. The last item is the current version.
    """
    order: list[int] = []
    for entry in entries:
        version = entry.current_version
        if entry.action == "delete":
            order = []
        elif not version or (order and order[-1] == version):
            continue
        elif entry.action == "rollback" and version in order:
            del order[len(order) - order[::-1].index(version):]
        else:
            order.append(version)
    return order


def default_user() -> str:
    """$USER (or the login name), falling back to 'root' as IRIS does."""
    user = os.environ.get("USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = ""
    return user or "root"


def check_name(name: str, what: str = "model name") -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"{what} {name!r} is not valid: use letters, digits, '_', '-', '.' "
                         "(not starting with '.' or '-', at most 128 characters)")
    return name


def check_label(label: str) -> str:
    if not LABEL_RE.match(label or ""):
        raise InputError(f"label {label!r} is not valid: start with a letter, then letters, "
                         "digits, '_' or '-' (at most 64 characters), e.g. stable")
    return label

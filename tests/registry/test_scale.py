"""Reads whose MLMD cost does not grow with the registry: counted calls, never timings.

Each test builds a small and a larger registry (TFX-shaped records) and counts the calls the
registry makes on its ``MetadataStore`` (a counting proxy in place of the store's connection).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from metastore.errors import InputError
from tests.registry.conftest import Env
from tests.registry.test_cli import mlmodel


class CountingStore:
    """Counts the MetadataStore methods called through it (``get_contexts``, ...)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted

    def total(self) -> int:
        return sum(self.calls.values())

    def scans(self) -> list[str]:
        """Calls that read every artifact or execution of a type (grow with the registry)."""
        return [n for n in self.calls
                if n in ("get_artifacts_by_type", "get_executions_by_type")]


def counted(reg: Any) -> CountingStore:
    reg.store.mlmd  # connect  # noqa: B018
    proxy = CountingStore(reg.store._mlmd)
    reg.store._mlmd = proxy
    return proxy


def build(env: Env, models: int, deployed: int = 2) -> None:
    reg = env.registry()
    for i in range(models):
        env.add_run(f"model_{i:03d}")
    for i in range(deployed):
        reg.deploy(f"model_{i:03d}", label="stable", user="root")
        reg.deploy(f"model_{i:03d}", user="root")


def calls_for(env: Env, fn: Any) -> CountingStore:
    reg = env.registry()
    proxy = counted(reg)
    fn(reg)
    return proxy


@pytest.fixture
def small(sqlite_env: Env) -> Env:
    build(sqlite_env, 3)
    return sqlite_env


@pytest.fixture
def large(tmp_path_factory: pytest.TempPathFactory) -> Env:
    from benchmarks.tfx_records import fake_model

    root = tmp_path_factory.mktemp("large")
    env = Env(str(root / "metadata.sqlite"), str(root / "serving_model"), fake_model(root), root)
    build(env, 15, deployed=4)
    env.add_run("model_001")  # a second run of one model
    return env


# ----------------------------------------------------------------------------- 1. list
def test_list_costs_the_same_number_of_calls_at_any_size(small: Env, large: Env) -> None:
    # First read (no list index yet): the whole registry, in a constant number of calls.
    few = calls_for(small, lambda reg: reg.list_page(limit=100))
    many = calls_for(large, lambda reg: reg.list_page(limit=100))
    assert many.total() == few.total() <= 7, (few.calls, many.calls)
    assert not many.scans(), many.calls  # contexts by type once; no whole-type artifact reads
    # Later reads, nothing changed: the three markers of the list index, at any size.
    warm_few = calls_for(small, lambda reg: reg.list_page(limit=100))
    warm_many = calls_for(large, lambda reg: reg.list_page(limit=100))
    paged = calls_for(large, lambda reg: reg.list_page(limit=5))
    assert warm_many.total() == warm_few.total() == paged.total() == 3, warm_many.calls
    # One model changed: its own records are read again, whatever the registry's size.
    small.registry().deploy("model_002", user="root")
    large.registry().deploy("model_002", user="root")
    changed_few = calls_for(small, lambda reg: reg.list_page(limit=100))
    changed_many = calls_for(large, lambda reg: reg.list_page(limit=100))
    assert changed_many.calls == changed_few.calls and not changed_many.scans()
    assert "get_contexts_by_type" not in changed_many.calls, changed_many.calls  # no full read


def _rows(reg: Any) -> list[tuple[Any, ...]]:
    return [(r.id, r.name, r.user, r.algorithm, r.serving, r.created, r.modified)
            for r in reg.list_models()]


def _fresh_rows(env: Env) -> list[tuple[Any, ...]]:
    """The rows read without the list index (as the first read of a registry does)."""
    from registry import list_index

    reg = env.registry()
    path = list_index.index_path(reg.backend)
    saved = Path(path).read_text(encoding="utf-8") if os.path.exists(path) else None
    if saved is not None:
        os.unlink(path)
    try:
        return _rows(reg)
    finally:
        if saved is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(saved)


def test_list_index_follows_every_kind_of_change(large: Env) -> None:
    reg = large.registry()
    assert _rows(reg) == _fresh_rows(large)  # writes the index
    steps = [
        lambda: reg.deploy("model_007", label="stable", user="alice"),
        lambda: reg.stop("model_000", user="root"),
        lambda: reg.rollback("model_001", user="root"),
        lambda: large.add_run("model_003"),  # a new Model artifact of a known model
        lambda: large.add_run("brand_new"),  # a new pipeline
        lambda: reg.delete("model_014", user="root"),
        lambda: reg.delete("model_002", force=True, user="root"),
        lambda: large.add_run("model_002"),  # trained again after a delete: visible again
        lambda: reg.import_model("imported", _archive(large), user="bob", validate=False),
    ]
    for step in steps:
        step()
        assert _rows(large.registry()) == _fresh_rows(large)
    names = [r.name for r in large.registry().list_models()]
    assert "brand_new" in names and "imported" in names and "model_014" not in names
    assert "model_002" in names


def _archive(env: Env) -> str:
    import tarfile

    path = env.root / "imported.tar.gz"
    if not path.exists():
        with tarfile.open(path, "w:gz") as tar:
            tar.add(env.model_dir, arcname=".")
    return str(path)


def test_list_index_survives_a_corrupt_file_and_a_recreated_database(large: Env) -> None:
    from registry import list_index

    reg = large.registry()
    rows = _rows(reg)
    path = list_index.index_path(reg.backend)
    assert os.path.exists(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"format": 1, "backend": "x", "markers": [[1')  # half-written by someone else
    assert _rows(large.registry()) == rows
    json.loads(Path(path).read_text(encoding="utf-8"))  # rewritten whole
    # The database is deleted and made again: the old index must not be taken for it.
    os.unlink(large.metadata)
    large.add_run("only_one")
    assert [r[1] for r in _rows(large.registry())] == ["only_one"]


def test_list_works_where_the_index_cannot_be_written(large: Env, tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import list_index

    monkeypatch.setattr(list_index, "index_path",
                        lambda backend: str(tmp_path / "missing-dir-file" / "x" / "i.json"))
    (tmp_path / "missing-dir-file").write_text("a file where a directory should be")
    reg = large.registry()
    assert len(reg.list_models()) == 15 and len(reg.list_models()) == 15


def test_list_rows_match_the_per_model_view(large: Env) -> None:
    reg = large.registry()
    rows = reg.list_models()
    assert [r.name for r in rows] == sorted(r.name for r in rows)  # ids follow creation here
    assert len(rows) == 15
    for row in rows[:5]:
        s = reg.summary(row.name)
        assert (s.id, s.user, s.serving, s.cdate, s.mdate) == (
            row.id, row.user, row.serving, row.created, row.modified)


# ----------------------------------------------------------------------------- 2. pagination
@pytest.mark.parametrize("order_by", ["id", "name", "created", "modified"])
def test_pages_cover_every_model_once(large: Env, order_by: str) -> None:
    reg = large.registry()
    everything = reg.list_page(limit=None, order_by=order_by)
    seen, token, pages = [], None, 0
    while True:
        page = reg.list_page(limit=4, page_token=token, order_by=order_by)
        assert page.total == 15 and page.offset == len(seen)
        seen += [r.name for r in page.rows]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert seen == [r.name for r in everything.rows] and len(set(seen)) == 15 and pages == 4
    by_offset = [r.name for off in range(0, 15, 4) for r in reg.list_page(4, off,
                                                                          order_by=order_by).rows]
    assert by_offset == seen


@pytest.mark.parametrize("order_by", ["id", "name"])
def test_pages_are_stable_while_models_are_deployed_between_reads(large: Env,
                                                                   order_by: str) -> None:
    reg = large.registry()
    writer = large.registry()
    seen, token = [], None
    for step in range(10):
        page = reg.list_page(limit=3, page_token=token, order_by=order_by)
        seen += [r.name for r in page.rows]
        token = page.next_page_token
        if token is None:
            break
        writer.deploy(f"model_{14 - step:03d}", user="root")  # ahead of and behind the cursor
        writer.deploy(seen[0], user="root")
    assert sorted(seen) == [f"model_{i:03d}" for i in range(15)]


def test_ordering_by_modified_puts_the_latest_change_first(large: Env) -> None:
    reg = large.registry()
    reg.deploy("model_010", user="root")
    assert reg.list_page(limit=1, order_by="modified").rows[0].name == "model_010"
    names = [r.name for r in reg.list_page(limit=None, order_by="name").rows]
    assert names == sorted(names)


def test_filters(large: Env) -> None:
    reg = large.registry()
    assert [r.name for r in reg.list_models(name_contains="L_01")] == [
        f"model_{i:03d}" for i in range(10, 15)]
    serving = reg.list_page(serving=True)
    assert [r.name for r in serving.rows] == [f"model_{i:03d}" for i in range(4)]
    assert serving.total == 4 and serving.next_page_token is None
    reg.stop("model_002", user="root")
    assert [r.name for r in reg.list_models(serving=True, name_contains="model_00")] == [
        "model_000", "model_001", "model_003"]
    assert len(reg.list_models(serving=False)) == 12


def test_bad_page_options_are_input_errors(large: Env) -> None:
    reg = large.registry()
    token = reg.list_page(limit=2).next_page_token
    assert token
    with pytest.raises(InputError, match="other"):
        reg.list_page(limit=2, page_token=token, order_by="name")
    with pytest.raises(InputError, match="not valid"):
        reg.list_page(page_token="garbage!")
    with pytest.raises(InputError):
        reg.list_page(order_by="size")


def test_cli_pages_in_json_and_says_what_it_shows(capsys: pytest.CaptureFixture[str],
                                                  large: Env) -> None:
    code, out, err = mlmodel(capsys, large, "list", "--limit", "10")
    assert code == 0 and "showing 10 of 15" in err and "--page-token" in err
    assert out.count("model_0") == 10
    code, out, _ = mlmodel(capsys, large, "list", "--limit", "10", "--output", "json")
    first = json.loads(out)
    assert first["total"] == 15 and len(first["models"]) == 10 and first["next_page_token"]
    code, out, _ = mlmodel(capsys, large, "list", "limit=10", "--page-token",
                           first["next_page_token"], "--output", "json")
    second = json.loads(out)
    assert second["next_page_token"] is None and second["offset"] == 10
    assert [m["name"] for m in first["models"] + second["models"]] == [
        f"model_{i:03d}" for i in range(15)]
    code, out, _ = mlmodel(capsys, large, "list", "filter=name~MODEL_01", "--serving",
                           "--output", "json")
    assert [m["name"] for m in json.loads(out)["models"]] == ["model_010"] or \
        json.loads(out)["models"] == []
    code, out, _ = mlmodel(capsys, large, "list", "--output", "json")
    assert isinstance(json.loads(out), list) and len(json.loads(out)) == 15  # as before
    code, out, err = mlmodel(capsys, large, "list", "--filter", "size>3")
    assert code == 2 and "name~TEXT" in err
    code, out, err = mlmodel(capsys, large, "list", "--offset", "3", "--page-token", "x")
    assert code == 2


# ----------------------------------------------------------------------------- 3. one model
@pytest.mark.parametrize("what", ["summary", "versions", "deploy", "history"])
def test_one_model_commands_read_only_that_model(small: Env, large: Env, what: str) -> None:
    def run(reg: Any) -> None:
        if what == "summary":
            reg.summary("model_001")
        elif what == "versions":
            assert [v.version for v in reg.versions("model_001")] == [1, 2]
        elif what == "deploy":
            reg.deploy("model_001", user="root")
        else:
            reg.history("model_001")

    few, many = calls_for(small, run), calls_for(large, run)
    assert many.calls == few.calls
    assert not many.scans() and "get_contexts_by_type" not in many.calls, many.calls


def test_serving_status_reads_only_that_model(small: Env, large: Env) -> None:
    from registry import status

    def run(reg: Any) -> None:
        rows = status.serving_status(reg, "model_001", "http://127.0.0.1:9", timeout=0.2)
        assert [r.version for r in rows] == [1, 2]

    assert calls_for(small, run).calls == calls_for(large, run).calls


# ----------------------------------------------------------------------------- 4. the server's poll
def test_an_idle_poll_is_one_query_and_a_deploy_is_seen_at_the_next(
        large: Env, small: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.api
    from serving.sources import registry_source

    opener = registry.api.open_registry

    def idle_calls(env: Env) -> tuple[CountingStore, Any, Any]:
        reg = opener(env.metadata, env.serving_dir)
        proxy = counted(reg)
        monkeypatch.setattr(registry.api, "open_registry", lambda *_, **__: reg)
        source = registry_source(env.metadata, env.serving_dir)
        first = source()
        proxy.calls.clear()
        for _ in range(5):
            assert source() == first
        return proxy, source, first

    few, _, _ = idle_calls(small)
    many, source, first = idle_calls(large)
    monkeypatch.undo()
    assert many.calls == few.calls == Counter({"get_executions": 5})

    large.registry().deploy("model_009", user="root")  # another process's write
    after = source()
    assert {(v.serving_name, v.version) for v in after} - {
        (v.serving_name, v.version) for v in first} == {("root_model_009", 1)}
    many.calls.clear()
    assert source() == after and many.total() == 1

"""Reading never creates a registry database; a database created later is picked up."""

from __future__ import annotations

import os

import pytest

from tests.registry.conftest import Env
from tests.registry.test_cli import mlmodel


def test_read_commands_in_the_wrong_folder_create_nothing(capsys: pytest.CaptureFixture[str],
                                                          sqlite_env: Env) -> None:
    code, out, err = mlmodel(capsys, sqlite_env, "list")
    assert code == 0 and "name" in out
    assert f"no registry at {sqlite_env.metadata} yet" in err
    code, _, err = mlmodel(capsys, sqlite_env, "summary", "mnist")
    assert code == 2 and "not found" in err and "Traceback" not in err
    code, out, _ = mlmodel(capsys, sqlite_env, "list", "--output", "json")
    assert code == 0 and out.strip() == "[]"
    assert not os.path.exists(sqlite_env.metadata)
    assert not os.path.exists(sqlite_env.metadata + ".lock")


def test_a_reader_follows_a_database_created_after_it_started(sqlite_env: Env) -> None:
    """What a server started before the first pipeline run relies on."""
    reader = sqlite_env.registry()
    assert reader.list_models() == [] and reader.serving_snapshot() == []
    assert reader.store.missing_database

    sqlite_env.add_run("mnist")  # the pipeline creates the database

    assert [m.name for m in reader.list_models()] == ["mnist"]
    assert not reader.store.missing_database
    result = reader.deploy("mnist", label="stable", user="root")  # a write on the same object
    assert result.latest_version == 1
    assert [(d.serving_name, d.version) for d in reader.serving_snapshot()] == [("root_mnist", 1)]


def test_first_write_creates_the_database(sqlite_env: Env) -> None:
    registry = sqlite_env.registry()
    assert registry.list_models() == []  # answered in memory
    with registry.store.lock.hold():
        registry.store.ensure_types()
    assert os.path.getsize(sqlite_env.metadata) > 0
    assert not registry.store.missing_database

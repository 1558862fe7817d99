"""`mlmodel eval` and `mlmodel predict` (issue 14): offline, on new data, through Beam's
RunInference, with the pipeline's readers, recorded in ML Metadata."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import datagen
from tests.registry.conftest import REPO, Env
from tests.registry.test_cli import mlmodel


@pytest.fixture
def env(tmp_path: Path, saved_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A registry holding pipeline model ``digits`` whose pushed files are a real SavedModel."""
    monkeypatch.setenv("MNIST_TFX_SERVER_URL", "http://127.0.0.1:9")
    env = Env(str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving_model"),
              saved_model_dir, tmp_path)
    env.add_run("digits")
    return env


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline") / "digits"
    return datagen.write_png_folder(root, n_per_class=4, split_folders=True)


def _direct(model_dir: str, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every PNG under ``folder`` scored by the SavedModel itself: (input -> probabilities,
    input -> label), with the same decoding as the readers."""
    import tensorflow as tf

    from datasources.readers import read_image

    files = sorted(folder.rglob("*.png"))
    pixels = np.stack([read_image(f) for f in files]).astype(np.float32)[..., None] / 255.0
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    probabilities = serve(images=tf.constant(pixels))["probabilities"].numpy()
    keys = [str(f.relative_to(folder)) for f in files]
    return dict(zip(keys, probabilities, strict=True)), {
        k: int(Path(k).parent.name) for k in keys}


def as_json(capsys: pytest.CaptureFixture[str], env: Env, *args: str) -> dict:
    code, out, err = mlmodel(capsys, env, *args)
    assert code == 0, err
    return json.loads(out)


def test_eval_equals_scoring_the_saved_model_directly(capsys: pytest.CaptureFixture[str],
                                                      env: Env, labelled: Path,
                                                      saved_model_dir: str) -> None:
    result = as_json(capsys, env, "eval", "digits", str(labelled), "--output", "json")
    probabilities, labels = _direct(saved_model_dir, labelled)
    keys = sorted(probabilities)
    predicted = np.array([int(np.argmax(probabilities[k])) for k in keys])
    truth = np.array([labels[k] for k in keys])
    assert result["examples"] == len(keys) == 50
    assert result["accuracy"] == pytest.approx(float(np.mean(predicted == truth)))
    picked = np.array([probabilities[k][labels[k]] for k in keys])
    assert result["loss"] == pytest.approx(float(-np.mean(np.log(picked))), rel=1e-5)
    for name, row in result["per_class"].items():
        mask = truth == row["index"]
        assert row["examples"] == int(mask.sum())
        assert row["accuracy"] == pytest.approx(float(np.mean(predicted[mask] == row["index"])))
        assert name == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                        "nine"][row["index"]]
    assert [r["no"] for r in result["repetitions"]] == [1, 2, 3]
    assert all(r["examples"] == 40 for r in result["repetitions"])  # round(0.8 x 50)


def test_repetitions_are_distinct_samples_and_a_seed_repeats_them() -> None:
    from registry.offline_eval import evaluate

    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet(np.ones(3), size=200)
    labels = rng.integers(0, 3, size=200)
    first = evaluate(probabilities, labels, ["a", "b", "c"], rate=0.5, repeat=4, seed=7)
    samples = [r["sample"] for r in first["repetitions"]]
    assert len(set(samples)) == 4 and all(r["examples"] == 100 for r in first["repetitions"])
    again = evaluate(probabilities, labels, ["a", "b", "c"], rate=0.5, repeat=4, seed=7)
    assert [r["sample"] for r in again["repetitions"]] == samples
    assert [r["losses"] for r in again["repetitions"]] == [r["losses"] for r in first["repetitions"]]
    other = evaluate(probabilities, labels, ["a", "b", "c"], rate=0.5, repeat=4, seed=8)
    assert not set(r["sample"] for r in other["repetitions"]) & set(samples)
    whole = evaluate(probabilities, labels, ["a", "b", "c"], rate=1.0, repeat=2)
    assert whole["repetitions"][0]["metrics"] == whole["repetitions"][1]["metrics"] == {
        "accuracy": whole["accuracy"]}


def test_eval_is_recorded_with_its_lineage(capsys: pytest.CaptureFixture[str], env: Env,
                                           labelled: Path) -> None:
    from ml_metadata.proto import metadata_store_pb2 as pb

    assert mlmodel(capsys, env, "deploy", "digits", "label=stable")[0] == 0
    result = as_json(capsys, env, "eval", "digits", str(labelled), "--label", "stable",
                     "--output", "json", "rate=0.5", "repeat=2")
    reg = env.registry()
    history = reg.history("digits")
    assert [e.action for e in history] == ["deploy", "eval"] and history[-1].version == 1
    summary = as_json(capsys, env, "summary", "digits", "--output", "json")
    [latest] = summary["cross_validation"]
    assert latest["evaluation_artifact_id"] == result["evaluation_artifact_id"]
    assert (latest["data"], latest["version"], latest["repeat"], latest["rate"]) == (
        str(labelled), 1, 2, 0.5)
    assert latest["accuracy"] == pytest.approx(result["accuracy"])
    mlmd = reg.store.mlmd
    events = mlmd.get_events_by_artifact_ids([result["evaluation_artifact_id"]])
    [made] = [e for e in events if e.type == pb.Event.OUTPUT]
    inputs = [e for e in mlmd.get_events_by_execution_ids([made.execution_id])
              if e.type == pb.Event.INPUT]
    types = {a.type for a in mlmd.get_artifacts_by_id([e.artifact_id for e in inputs])}
    assert types == {"mlmodel.Deployment", "mlmodel.Dataset"}
    [dataset] = [a for a in mlmd.get_artifacts_by_id([e.artifact_id for e in inputs])
                 if a.type == "mlmodel.Dataset"]
    assert dataset.uri == str(labelled) and dataset.properties["examples"].int_value == 50
    code, out, _ = mlmodel(capsys, env, "summary", "digits")
    assert code == 0 and "cross_validation" in out and "accuracy" in out


def test_predict_csv_equals_the_servers_predictions(capsys: pytest.CaptureFixture[str],
                                                    env: Env, labelled: Path,
                                                    saved_model_dir: str,
                                                    tmp_path: Path) -> None:
    from click.testing import CliRunner

    from serving.cli import main as serving
    from tests.serving.test_cli import server_process

    folder = labelled / "testing"
    out = tmp_path / "predictions.csv"
    code, _, err = mlmodel(capsys, env, "predict", "digits", str(folder), "--output", "csv",
                           "--out", str(out))
    assert code == 0 and "wrote 10 predictions" in err, err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 10 and all(len([k for k in r if k.startswith("p_")]) == 10 for r in rows)
    with server_process(tmp_path / "server", Path(saved_model_dir)) as (_, url):
        served = CliRunner().invoke(serving, ["predict", "mnist", str(folder), "--url", url,
                                              "--output", "json"])
    assert served.exit_code == 0, served.output
    by_file = {Path(p["input"]).relative_to(folder).as_posix(): p
               for p in json.loads(served.output)["predictions"]}
    for row in rows:
        theirs = by_file[row["input"]]
        ours = np.array([float(row[f"p_{name}"]) for name in (
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")])
        np.testing.assert_allclose(ours, theirs["prediction"], atol=2e-5)
        assert row["interpreted"] == theirs["interpreted"]
        assert int(row["label"]) == theirs["label"]


def test_predict_keeps_order_across_chunks_and_reads_unlabelled_images(
        capsys: pytest.CaptureFixture[str], env: Env, tmp_path: Path,
        saved_model_dir: str) -> None:
    datagen.write_idx(tmp_path / "idx", 2500)  # three RunInference chunks of 1,000
    result = as_json(capsys, env, "predict", "digits", str(tmp_path / "idx"), "-o", "json")
    predictions = result["predictions"]
    assert [p["input"] for p in predictions[998:1002]] == [
        f"train-images-idx3-ubyte.gz#{i}" for i in range(998, 1002)]
    assert len(predictions) == 2500 and all(p["label"] is not None for p in predictions)
    limited = as_json(capsys, env, "predict", "digits", str(tmp_path / "idx"), "-o", "json",
                      "--limit", "7")["predictions"]
    assert [p["input"] for p in limited] == [p["input"] for p in predictions[:7]]
    np.testing.assert_allclose([p["prediction"] for p in limited],
                               [p["prediction"] for p in predictions[:7]], atol=1e-6)
    loose = tmp_path / "loose"  # images without label folders: predicted, label unknown
    loose.mkdir()
    for i, name in enumerate(["a.png", "b.png"]):
        datagen.write_png_folder(tmp_path / f"one{i}", n_per_class=1, classes=[i])
        shutil.copy(tmp_path / f"one{i}" / str(i) / "0.png", loose / name)
    code, out, err = mlmodel(capsys, env, "predict", "digits", str(loose))
    assert code == 0, err
    assert "a.png" in out and "b.png" in out and "interpreted" in out


@pytest.mark.parametrize("args, words", [
    (["eval", "digits", "{data}/nowhere"], "no such file"),
    (["eval", "digits", "{pets}"], "cat"),  # a label folder that is not one of the classes
    (["eval", "digits", "{loose}"], "<label>/ folders"),  # eval needs labelled data
    (["eval", "digits", "{data}", "--rate", "0"], "rate"),
    (["eval", "digits", "{data}", "--version", "9"], "no deployed version 9"),
    (["eval", "digits", "{data}", "--version", "1", "--label", "x"], "not both"),
    (["predict", "nosuchmodel", "{data}"], "not found"),
    (["predict", "digits", "{data}", "--out", "{tmp}/x.txt"], "--output json or csv"),
])
def test_bad_inputs_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], env: Env,
                                            labelled: Path, tmp_path: Path, args: list[str],
                                            words: str) -> None:
    pets = datagen.write_named_folder(tmp_path / "pets", [
        ("cat", p) for p in datagen.synthetic_images([0, 1], seed=1)])
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next(labelled.rglob("*.png")), loose / "x.png")
    values = {"data": str(labelled), "pets": str(pets), "loose": str(loose), "tmp": str(tmp_path)}
    code, _, err = mlmodel(capsys, env, *[a.format(**values) for a in args])
    assert code == 2, err
    assert words in err and "Traceback" not in err and err.count("\n") <= 2, err


def run_probe(env: Env, watched: tuple[str, ...], *args: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """``mlmodel ARGS`` in a fresh interpreter; ('RESULT <exit code> <module loaded?>...', run)."""
    loaded = ", ".join(f"{name!r} in sys.modules" for name in watched)
    probe = ("import sys\nfrom registry.cli import main\ntry:\n    main(sys.argv[1:])\n"
             f"except SystemExit as e:\n    code = e.code\nprint('RESULT', code, {loaded})\n")
    done = subprocess.run([sys.executable, "-c", probe, "--metadata", env.metadata,
                           "--serving-dir", env.serving_dir, *args], cwd=REPO,
                          capture_output=True, text=True, env=env.environ(), timeout=300)
    result = [x for x in done.stdout.splitlines() if x.startswith("RESULT")]
    return (result[0] if result else ""), done


def test_bad_arguments_do_not_import_tensorflow_or_beam(env: Env, labelled: Path) -> None:
    result, done = run_probe(env, ("tensorflow", "apache_beam"), "eval", "digits",
                             str(labelled / "nowhere"))
    assert result == "RESULT 2 False False", done.stdout + done.stderr


def test_predict_takes_beam_arguments_and_never_imports_tfx(env: Env, labelled: Path) -> None:
    result, done = run_probe(env, ("tfx", "apache_beam"), "predict", "digits",
                             str(labelled / "testing"), "--output", "json", "--",
                             "--runner=DirectRunner", "--direct_num_workers=1")
    assert result == "RESULT 0 False True", done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout.split("\nRESULT")[0])
    assert len(report["predictions"]) == 10
    assert "--runner=DirectRunner --direct_num_workers=1" in done.stderr

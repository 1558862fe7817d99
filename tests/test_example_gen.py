"""Our ExampleGen end to end: the component alone in a LocalDagRunner pipeline, and the executor
on every input layout; the output tf.Examples are read back and compared with the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts import examples
from datasources import readers
from pipeline.components.image_example_gen import detect_layout, make_example_gen  # noqa: E402
from tests import datagen  # noqa: E402

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _decode(records: list[bytes]) -> list[tuple[np.ndarray, int]]:
    return [readers.parse_example(r, "output", 10) for r in records]


def _run_pipeline(data: Path, tmp_path: Path, **kwargs: object) -> tuple[dict[str, list[bytes]], object]:
    from tfx import v1 as tfx

    example_gen = make_example_gen(str(data), **kwargs)  # type: ignore[arg-type]
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="examplegen_test",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")
        ),
        enable_cache=True,
        beam_pipeline_args=BEAM_ARGS,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    uris = sorted(Path(tmp_path / "root" / "ExampleGen" / "examples").iterdir())
    assert len(uris) == 1, "one Examples artifact"
    return {split: datagen.read_split(uris[0] / f"Split-{split}") for split in ("train", "eval")}, example_gen


@pytest.mark.slow
def test_local_dag_runner_on_a_flat_image_folder(tmp_path: Path) -> None:
    data = datagen.write_png_folder(tmp_path / "data", n_per_class=6)
    layout = detect_layout(str(data), eval_percent=25)
    splits, component = _run_pipeline(data, tmp_path, eval_percent=25)
    assert component.id == "ExampleGen"  # type: ignore[attr-defined]
    assert {k: len(v) for k, v in splits.items()} == layout.num_examples
    # Every image arrives exactly once, in the split its file name hashes to, pixels intact.
    expected = {
        rel: (readers.read_image(data / rel), label)
        for rel, label in readers.list_image_files(data, None, examples.DIGIT_CLASS_NAMES)
    }
    for split, records in splits.items():
        want = sorted((label, pixels.tobytes()) for rel, (pixels, label) in expected.items()
                      if readers.in_split(rel, split, 25))
        got = sorted((label, pixels.tobytes()) for pixels, label in _decode(records))
        assert got == want

    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    store = mlmd.MetadataStore(config)
    [artifact] = store.get_artifacts_by_type("Examples")
    assert artifact.properties["split_names"].string_value == '["train", "eval"]'
    assert artifact.state == metadata_store_pb2.Artifact.LIVE


@pytest.mark.slow
def test_local_dag_runner_on_idx_files(tmp_path: Path) -> None:
    datagen.write_idx(tmp_path / "data", 60)
    datagen.write_idx(tmp_path / "data", 20, prefix="t10k", gz=False, seed=3)
    splits, _ = _run_pipeline(tmp_path / "data", tmp_path)
    train, evals = _decode(splits["train"]), _decode(splits["eval"])
    assert len(train) == 60 and len(evals) == 20
    images, labels = readers.read_idx_pair(*map(str, datagen.write_idx(tmp_path / "again", 60)), 10)
    assert sorted((lab, p.tobytes()) for p, lab in train) == sorted(
        (int(lab), p.tobytes()) for p, lab in zip(images, labels, strict=True)
    )


@pytest.mark.slow
def test_executor_on_split_folders_tsv_and_tfrecord(tmp_path: Path) -> None:
    folders = datagen.write_png_folder(tmp_path / "png", n_per_class=4, split_folders=True)
    out = datagen.run_example_gen_executor(folders, tmp_path / "out_png")
    assert {k: len(v) for k, v in out.items()} == {"train": 40, "eval": 10}
    assert sorted(label for _, label in _decode(out["eval"])) == list(range(10))

    tsv = datagen.write_iris_tsv(tmp_path / "tsv", n_per_class=3, float_features=True)
    out = datagen.run_example_gen_executor(tsv, tmp_path / "out_tsv")
    assert {k: len(v) for k, v in out.items()} == {"train": 30, "eval": 10}
    want = {p.tobytes() for _, p, _ in readers.iter_iris_tsv(tsv / "test.tsv", 10)}
    assert {p.tobytes() for p, _ in _decode(out["eval"])} == want

    tfr = datagen.write_tfrecord(tmp_path / "tfr" / "data.tfrecord.gz", 50)
    (tmp_path / "tfr" / "unrelated.txt").write_text("a single file is read on its own")
    out = datagen.run_example_gen_executor(tfr, tmp_path / "out_tfr", eval_percent=30)
    expected_eval = sum(readers.in_split(f"data.tfrecord.gz#{i}", "eval", 30) for i in range(50))
    assert {k: len(v) for k, v in out.items()} == {"train": 50 - expected_eval, "eval": expected_eval}
    # Records in our layout pass through unchanged (same canonical serialization).
    assert set(out["train"]) | set(out["eval"]) == set(readers.iter_tfrecord_records(tfr))

"""Shared fixtures: Keras 2 everywhere, and one real tiny pipeline run per test session."""

from __future__ import annotations

from contracts.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()  # Keras 2 before any test imports TensorFlow

import dataclasses  # noqa: E402
import io  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from modules.hparams import HParams  # noqa: E402
from tests.system_parts import pytest_report_header, pytest_terminal_summary  # noqa: E402,F401

TINY_HPARAMS = HParams(filters_1=8, filters_2=16, hidden_units_1=32, hidden_units_2=16,
                       dropout=0.1, learning_rate=3e-3, epochs=6, batch_size=32, augment=False)


@dataclasses.dataclass
class TinyRun:
    """A finished pipeline run on tiny generated data (see ``tiny_pipeline_run``)."""

    root: Path
    data_path: str
    metadata_path: str
    serving_dir: str
    pipeline_root: str
    model_name: str
    summary: object
    output: str

    def config(self, **changes: object) -> object:
        """The config that produced this run, with ``changes``."""
        from pipeline.config import PipelineConfig

        values: dict[str, object] = dict(
            model_name=self.model_name, data=self.data_path, pipeline_root=self.pipeline_root,
            metadata_path=self.metadata_path, serving_dir=self.serving_dir,
            log_dir=str(self.root / "logs"), hparams=TINY_HPARAMS, accuracy_threshold=0.5,
            max_accuracy_drop=0.05,
        )
        values.update(changes)
        return PipelineConfig(**values)  # type: ignore[arg-type]


def run_tiny(run: TinyRun, **changes: object) -> tuple[object, str]:
    """Run the pipeline with ``run``'s config (plus ``changes``); returns (summary, output)."""
    from pipeline.run import run_pipeline
    from pipeline.runner_cli import registry_deploy

    out = io.StringIO()
    summary = run_pipeline(run.config(**changes), out=out,  # type: ignore[arg-type]
                           deploy=registry_deploy)
    return summary, out.getvalue()


@pytest.fixture(autouse=True)
def no_project_state(monkeypatch: pytest.MonkeyPatch,
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the checkout's own runs/ and serving_model/ by default."""
    isolated = tmp_path_factory.getbasetemp() / "default-project-state"
    monkeypatch.setenv("MNIST_TFX_METADATA", str(isolated / "metadata.sqlite"))
    monkeypatch.setenv("MNIST_TFX_SERVING_DIR", str(isolated / "serving_model"))


@pytest.fixture(scope="session")
def tiny_pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The whole graph, once per session, on 10 classes x 16 (+4 eval) generated PNGs."""
    from tests.datagen import write_png_folder

    root = tmp_path_factory.mktemp("tiny_run")
    data = write_png_folder(root / "data", n_per_class=16, split_folders=True)
    run = TinyRun(root=root, data_path=str(data), metadata_path=str(root / "metadata.sqlite"),
                  serving_dir=str(root / "serving_model"), pipeline_root=str(root / "pipeline_root"),
                  model_name="tiny", summary=None, output="")
    run.summary, run.output = run_tiny(run)
    return run

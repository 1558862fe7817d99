"""Pipeline benchmark: wall time per component and end to end, vs plain Keras in the same run.

For each dataset (the embedded digits; Fashion-MNIST's 60k/10k when Debian's
``dataset-fashion-mnist`` is installed) this:

1. runs the whole pipeline with default settings in a fresh temporary root (no cache), timing
   every component and the whole run, and reads the eval accuracy from MLMD;
2. trains the same model (the Trainer's resolved budget: epochs, batch, augmentation, early
   stopping) in plain Keras on in-memory numpy arrays of the same images, in this process, and
   prints the ratio Trainer / Keras.

``--before`` adds, per dataset, a run with the fixed recipe the pipeline used before the budget
was derived from the data (digits 30 epochs, Fashion-MNIST 8, batch 128).

``--infra-ab`` adds, per dataset, a run with ``--no-infra-validation`` (issue 24's target: the
InfraValidator costs ``make run`` at most 10%). The step only adds its own seconds (nothing runs
in parallel with it), so its share is read from the run with it, InfraValidator seconds over the
rest; both end-to-end times are printed too, though the Trainer's early stopping moves them more.

Usage: ``python benchmarks/pipeline_bench.py [--datasets digits,fashion-mnist] [--epochs N]``.
Results are printed as a table and written to ``benchmarks/out/pipeline_bench.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contracts.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()

from benchmarks.machine import machine  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.datasets import resolve_data  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def load_arrays(dataset: str, eval_percent: int):
    """The same train/eval images the pipeline reads, as numpy arrays (uint8, int)."""
    import numpy as np

    from datasources import readers

    data = resolve_data(None, dataset)
    if dataset == "fashion-mnist":
        root = Path(data.path)
        x, y = readers.read_idx_pair(str(root / "train-images-idx3-ubyte.gz"),
                                     str(root / "train-labels-idx1-ubyte.gz"), len(data.class_names))
        xe, ye = readers.read_idx_pair(str(root / "t10k-images-idx3-ubyte.gz"),
                                       str(root / "t10k-labels-idx1-ubyte.gz"), len(data.class_names))
        return x, y, xe, ye
    splits = {}
    for split in ("train", "eval"):
        items = list(readers.iter_image_folder(data.path, None, data.class_names, split=split,
                                               eval_percent=eval_percent))
        splits[split] = (np.stack([p for _, p, _ in items]), np.array([lbl for _, _, lbl in items]))
    return (*splits["train"], *splits["eval"])


def keras_baseline(dataset: str, config: PipelineConfig,
                   training: dict[str, object]) -> dict[str, float]:
    """Same model, same budget (the Trainer's resolved one), plain ``model.fit`` on arrays."""
    import dataclasses

    import numpy as np

    from modules.budget import TrainingBudget
    from modules.model import budget_callbacks, build_model, schedule_callbacks

    fields = {f.name for f in dataclasses.fields(TrainingBudget)}
    budget = TrainingBudget(**{k: v for k, v in training.items() if k in fields})
    hparams = budget.apply(config.hparams)
    x, y, xe, ye = load_arrays(dataset, config.eval_percent)
    x = (x[..., None] / 255.0).astype(np.float32)
    xe = (xe[..., None] / 255.0).astype(np.float32)
    model = build_model(hparams)
    started = time.monotonic()
    history = model.fit(x, y, batch_size=hparams.batch_size, epochs=hparams.epochs,
                        validation_data=(xe, ye),
                        callbacks=[*schedule_callbacks(hparams), *budget_callbacks(budget)],
                        verbose=0)
    seconds = time.monotonic() - started
    accuracy = float(model.evaluate(xe, ye, verbose=0)[1])
    return {"fit_seconds": seconds, "accuracy": accuracy, "train": len(y), "eval": len(ye),
            "epochs_run": len(history.history["loss"])}


# What the pipeline trained with before the data-derived budget (issue 8): a fixed recipe per
# dataset name. ``--before`` runs it in the same process as the new defaults, for a fair pair.
OLD_RECIPES = {"digits": {"epochs": 30, "batch_size": 128, "augment": True},
               "fashion-mnist": {"epochs": 8, "batch_size": 128, "augment": False}}


def run_one(dataset: str, epochs: int | None, recipe: str = "budget",
            infra_validation: bool = True) -> dict[str, object]:
    from ml_metadata.metadata_store import metadata_store

    from metastore.metadata_config import connection_config
    from modules.hparams import HParams
    from pipeline.run import run_pipeline

    with tempfile.TemporaryDirectory(prefix=f"bench-{dataset}-") as tmp:
        hparams = HParams(**OLD_RECIPES[dataset]) if recipe == "before" else HParams()
        if epochs:
            hparams = hparams.replace(epochs=epochs)
        config = PipelineConfig(
            model_name=f"bench_{dataset.replace('-', '_')}", dataset=dataset,
            pipeline_root=f"{tmp}/root", metadata_path=f"{tmp}/metadata.sqlite",
            serving_dir=f"{tmp}/serving", log_dir=f"{tmp}/logs", enable_cache=False,
            hparams=hparams, infra_validation=infra_validation,
        )
        out = io.StringIO()
        started = time.monotonic()
        summary = run_pipeline(config, out=out)
        total = time.monotonic() - started
        store = metadata_store.MetadataStore(connection_config(config.metadata_path))
        model = store.get_artifacts_by_uri(summary.model_uri)[0] if summary.model_uri else None
        fit_seconds = model.custom_properties["train_seconds"].double_value if model else None
        print(out.getvalue(), file=sys.stderr)
        baseline = keras_baseline(dataset, config, summary.training)
    trainer = summary.component_seconds.get("Trainer")
    label = dataset if recipe == "budget" else f"{dataset} (before)"
    return {
        "dataset": label if infra_validation else f"{label} (no infra)",
        "epochs": summary.training.get("epochs_run"), "budget": summary.training,
        "end_to_end_s": total,
        "components_s": summary.component_seconds, "accuracy": summary.accuracy,
        "blessed": summary.blessed, "trainer_fit_s": fit_seconds, "keras": baseline,
        "trainer_vs_keras": (trainer / baseline["fit_seconds"]) if trainer else None,
        "trainer_fit_vs_keras": (fit_seconds / baseline["fit_seconds"]) if fit_seconds else None,
    }


def print_table(results: list[dict[str, object]]) -> None:
    names = ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
             "Trainer", "LatestBlessedModelResolver", "Evaluator", "InfraValidator", "Pusher"]
    header = f"{'':28}" + "".join(f"{r['dataset']:>22}" for r in results)
    print(header)
    for name in names:
        print(f"{name:28}" + "".join(f"{r['components_s'].get(name, float('nan')):>21.1f}s"
                                     for r in results))
    rows = [
        ("end to end", lambda r: f"{r['end_to_end_s']:.1f}s"),
        ("eval accuracy (TFMA)", lambda r: f"{r['accuracy']:.4f}"),
        ("blessed", lambda r: str(r["blessed"])),
        ("epochs run", lambda r: str(r["epochs"])),
        ("batch", lambda r: str(r["budget"].get("batch_size"))),
        ("augment", lambda r: str(r["budget"].get("augment"))),
        ("Trainer fit only", lambda r: f"{r['trainer_fit_s']:.1f}s"),
        ("plain Keras fit", lambda r: f"{r['keras']['fit_seconds']:.1f}s"),
        ("plain Keras accuracy", lambda r: f"{r['keras']['accuracy']:.4f}"),
        ("Trainer / Keras", lambda r: f"{r['trainer_vs_keras']:.2f}x"),
        ("Trainer fit / Keras fit", lambda r: f"{r['trainer_fit_vs_keras']:.2f}x"),
    ]
    for label, fmt in rows:
        print(f"{label:28}" + "".join(f"{fmt(r):>22}" for r in results))
    for r in results:
        step = r["components_s"].get("InfraValidator")
        if step:
            share = step / (r["end_to_end_s"] - step)
            print(f"InfraValidator on {r['dataset']}: {step:.1f} s = +{100 * share:.1f}% of the "
                  f"run without it (target <= +10%: {'met' if share <= 0.10 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,fashion-mnist")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the data-derived epochs")
    parser.add_argument("--infra-ab", action="store_true",
                        help="also run each dataset with --no-infra-validation (same run)")
    parser.add_argument("--before", action="store_true",
                        help="also run each dataset with its old fixed recipe (a before/after "
                             "pair in the same run)")
    args = parser.parse_args()
    results = []
    for dataset in args.datasets.split(","):
        if dataset == "fashion-mnist" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
            print("skipping fashion-mnist: apt-get install dataset-fashion-mnist", file=sys.stderr)
            continue
        results.append(run_one(dataset, args.epochs))
        if args.infra_ab:
            results.append(run_one(dataset, args.epochs, infra_validation=False))
        if args.before:
            results.append(run_one(dataset, args.epochs, recipe="before"))
    print(f"machine: {machine()}")
    print_table(results)
    OUT.mkdir(exist_ok=True)
    (OUT / "pipeline_bench.json").write_text(
        json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()

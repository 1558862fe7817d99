"""Environment variables and default paths every part (pipeline, registry, server) agrees on."""

from __future__ import annotations

import os

ENV_METADATA = "MNIST_TFX_METADATA"        # the MLMD database: a SQLite path or mysql://...
ENV_SERVING_DIR = "MNIST_TFX_SERVING_DIR"  # where versions are written and served from
ENV_SERVER_URL = "MNIST_TFX_SERVER_URL"    # the model server clients talk to

DEFAULT_METADATA = "runs/metadata.sqlite"
DEFAULT_SERVING_DIR = "serving_model"
DEFAULT_PIPELINE_ROOT = "runs/pipeline_root"
DEFAULT_LOG_DIR = "runs/logs"
DEFAULT_SERVER_URL = "http://127.0.0.1:8501"


def default_metadata() -> str:
    return os.environ.get(ENV_METADATA) or DEFAULT_METADATA


def default_serving_dir() -> str:
    return os.environ.get(ENV_SERVING_DIR) or DEFAULT_SERVING_DIR


def default_server_url() -> str:
    return os.environ.get(ENV_SERVER_URL) or DEFAULT_SERVER_URL

ENV_CAPTURE_DIR = "MNIST_TFX_CAPTURE_DIR"  # where the server writes captured requests (PredictionLog)
DEFAULT_CAPTURE_DIR = "runs/capture"


def default_capture_dir() -> str:
    return os.environ.get(ENV_CAPTURE_DIR) or DEFAULT_CAPTURE_DIR

"""Beam's ``--setup_file=./setup.py`` entry point: the package metadata lives in pyproject.toml.

Beam's stager runs ``python -m build --sdist`` (or ``python setup.py sdist``) here and installs
the result on every worker, so that the pipeline's executors (``pipeline/``), user code
(``modules/``) and contracts (``contracts/``) import there as they do in this checkout.
"""

from setuptools import setup

setup()

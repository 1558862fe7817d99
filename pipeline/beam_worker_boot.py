#!/usr/bin/env python3
"""Boot a Beam Python SDK worker from what the job staged: the job's own code arrives by staging.

``python -m apache_beam.runners.worker.worker_pool_main --container_executable THIS`` runs this
script for every worker it starts (Beam's Go ``boot`` binary does the same inside Beam's SDK
container image, which is not available without Docker). It

1. asks the runner's provision service for the job's options and staged dependencies;
2. fetches each staged file from the artifact service (``--setup_file``'s sdist
   ``workflow.tar.gz``, ``--extra_package`` wheels or tarballs, a pickled main session);
3. installs the packages with ``pip install --no-deps --target`` into a cache folder named after
   their content (so the next worker of the same job reuses it; written to a temporary folder,
   then renamed);
4. runs ``apache_beam.runners.worker.sdk_worker_main`` with that folder first on ``PYTHONPATH``.

The interpreter that runs it needs apache-beam and the job's third-party dependencies (TFX, ...),
not this project: our code reaches the worker only through staging. Copy this file to the worker
machine (it imports nothing from this repository). ``MNIST_TFX_WORKER_CACHE`` sets the cache
folder (default: a ``beam-worker-cache`` folder in the temporary directory).
"""

from __future__ import annotations

import os
import sys

# Run as a script from the checkout, Python would put this file's folder first on sys.path; the
# worker must not see the checkout, only what was staged.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

PACKAGE_SUFFIXES = (".tar.gz", ".tgz", ".whl", ".zip")
MAIN_SESSION = "pickled_main_session"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("id", "logging_endpoint", "artifact_endpoint", "provision_endpoint",
                 "control_endpoint"):
        parser.add_argument(f"--{name}", required=name in ("id", "provision_endpoint",
                                                          "control_endpoint"))
    parser.add_argument("--semi_persistent_directory", default=None)
    return parser.parse_known_args(argv)[0]


def _fetch(info: object, artifact_endpoint: str, metadata: list[tuple[str, str]],
           folder: str) -> list[str]:
    """Every staged file of the job, written into ``folder``; returns their names."""
    import grpc
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import (
        beam_artifact_api_pb2,
        beam_artifact_api_pb2_grpc,
        beam_runner_api_pb2,
    )

    retrieval = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(
        grpc.insecure_channel(artifact_endpoint))
    names = []
    for dependency in info.dependencies:  # type: ignore[attr-defined]
        if dependency.role_urn != common_urns.artifact_roles.STAGING_TO.urn:
            continue
        role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
            dependency.role_payload)
        name = os.path.basename(role.staged_name)
        with open(os.path.join(folder, name), "wb") as out:
            for chunk in retrieval.GetArtifact(
                    beam_artifact_api_pb2.GetArtifactRequest(artifact=dependency),
                    metadata=metadata):
                out.write(chunk.data)
        names.append(name)
    return names


def _install(folder: str, packages: list[str], cache: str) -> str | None:
    """``pip install --no-deps --target`` of the staged packages, cached by their content."""
    if not packages:
        return None
    digest = hashlib.sha256()
    for name in sorted(packages):
        with open(os.path.join(folder, name), "rb") as handle:
            digest.update(name.encode() + b"\0" + hashlib.sha256(handle.read()).digest())
    target = os.path.join(cache, digest.hexdigest()[:24])
    if os.path.isdir(target):
        return target
    os.makedirs(cache, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".installing-", dir=cache)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--disable-pip-version-check", "--no-index",
                        "--target", staging, *[os.path.join(folder, p) for p in packages]],
                       check=True, cwd=folder)
        try:
            os.rename(staging, target)
        except OSError:  # another worker of the job installed the same packages meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def main(argv: list[str] | None = None) -> None:
    import grpc
    from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc
    from google.protobuf import json_format

    args = _arguments(sys.argv[1:] if argv is None else argv)
    metadata = [("worker_id", args.id)]
    provision = beam_provision_api_pb2_grpc.ProvisionServiceStub(
        grpc.insecure_channel(args.provision_endpoint))
    info = provision.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(),
                                      metadata=metadata).info
    semi = args.semi_persistent_directory or tempfile.mkdtemp(prefix=f"beam-worker-{args.id}-")
    staged = os.path.join(semi, "staged")
    os.makedirs(staged, exist_ok=True)
    names = _fetch(info, args.artifact_endpoint or info.artifact_endpoint.url, metadata, staged)
    packages = [n for n in names if n.endswith(PACKAGE_SUFFIXES) and n != MAIN_SESSION]
    cache = os.environ.get("MNIST_TFX_WORKER_CACHE") or os.path.join(tempfile.gettempdir(),
                                                                     "beam-worker-cache")
    installed = _install(staged, packages, cache)
    print(f"beam_worker_boot: worker {args.id}: staged {', '.join(names) or 'nothing'}; "
          f"installed into {installed or '(nothing to install)'}", file=sys.stderr, flush=True)
    env = dict(os.environ)
    if installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (installed, env.get("PYTHONPATH")) if p)
    env.update({
        "WORKER_ID": args.id,
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "SEMI_PERSISTENT_DIRECTORY": semi,
        "CONTROL_API_SERVICE_DESCRIPTOR": f'url: "{args.control_endpoint}"',
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    })
    logging_url = args.logging_endpoint or info.logging_endpoint.url
    if logging_url:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = f'url: "{logging_url}"'
    if info.status_endpoint.url:
        env["STATUS_API_SERVICE_DESCRIPTOR"] = f'url: "{info.status_endpoint.url}"'
    os.chdir(semi)  # never the checkout
    os.execve(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"],
              env)


if __name__ == "__main__":
    main()

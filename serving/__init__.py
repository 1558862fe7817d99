"""The model server: a TF Serving-compatible REST front end (plus KServe v2 and SageMaker routes)
over a model manager that follows the registry's deployments.

* ``serving.manager``  -- ModelManager: versions, labels, load-before-unload, status (no HTTP).
* ``serving.servable`` -- one loaded SavedModel version: signatures, metadata, batched calls.
* ``serving.codec``    -- TF Serving / KServe JSON <-> numpy, with validation.
* ``serving.app``      -- aiohttp application: a table of path patterns, one handler each.
* ``serving.cli``      -- ``serving start | predict | status``.
"""

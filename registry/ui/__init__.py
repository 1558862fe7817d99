"""``mlmodel ui``: the web console, a third front end on the registry's typed API and MLMD.

* ``queries``: what the pages show, read from ``registry.api`` and MLMD (no TensorFlow);
* ``graph``: the layered layout of a lineage or run graph (no dependencies);
* ``figures``: lazily made, cached figures (the report's figure code; TensorFlow only here);
* ``security``: the auth token, CSRF tokens and the bind-address rule;
* ``app``: the aiohttp routes and Jinja2 templates; ``cli``: the ``mlmodel ui`` command.
"""

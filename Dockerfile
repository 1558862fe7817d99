# The project inside TFX's own image: the --image of the Kubeflow runner, and `make run` /
# `make test` for anyone who has Docker but no Python 3.10.
#   docker build -t mnist-tfx .
#   docker run --rm mnist-tfx make run        # or: make test
# Not built on the development machine (it has no Docker engine): see the README.
FROM gcr.io/tfx-oss-public/tfx:1.16.0
WORKDIR /opt/mnist-tfx
COPY . .
# The image's Python 3.10 already holds TFX 1.16; install the pinned set and the project into it,
# and point the Makefile's .venv at it so that `make run` / `make test` skip their own set-up.
RUN python3 -m pip install --no-cache-dir -c constraints.txt -e '.[dev]' \
 && mkdir -p .venv/bin && ln -s "$(command -v python3)" .venv/bin/python \
 && touch .venv/.installed
ENTRYPOINT []
CMD ["make", "run"]

# syntax=docker/dockerfile:1
#
# watcher as a container: a sidecar next to whatever consumes its events and outputs.
#
#   docker build -t watcher .
#   docker run -d --name watcher --read-only \
#     -v watcher-data:/var/lib/watcher \
#     -v "$PWD/watcher.toml:/etc/watcher/watcher.toml:ro" \
#     -e SEQUENTUM_API_KEY -p 127.0.0.1:9465:9465 watcher
#
# State (state.db), the events file and fetched outputs live on the /var/lib/watcher volume;
# nothing else is written (bytecode is compiled at build time, TMPDIR is on the volume), so the
# root filesystem can be read-only. Config: a mounted /etc/watcher/watcher.toml and WATCHER_*
# variables (see config.example.toml). The HTTP endpoint listens on 0.0.0.0:9465 in the
# container (WATCHER_HTTP__LISTEN); HEALTHCHECK asks its /healthz.

# The base of both stages, pinned by tag and digest: a tag can be pushed again, a digest cannot.
# To move on (a Python or Debian fix), take the digest of the new tag's multi-platform index:
#   docker buildx imagetools inspect python:3.11.X-slim-bookworm
ARG BASE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# --- build: wheels of the dependencies, then of watcher -------------------------------------------
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies from pyproject.toml alone, so this layer is built again only when they (or
# the version) change, not with every change of the source.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip wheel --wheel-dir /deps -r requirements.txt \
    && cp requirements.txt /deps/
COPY README.md ./
COPY watcher ./watcher
COPY watcher_sim ./watcher_sim
RUN pip wheel --no-deps --wheel-dir /app .

# --- runtime: slim Python, the wheels, a non-root user --------------------------------------------
FROM ${BASE}
# VERSION is pyproject.toml's (a test keeps them equal). SOURCE_URL and REVISION say where the
# image came from: docker build --build-arg SOURCE_URL="$(git remote get-url origin)"
#   --build-arg REVISION="$(git rev-parse HEAD)" -t watcher .
ARG VERSION=0.1.0
ARG SOURCE_URL=""
ARG REVISION=""
LABEL org.opencontainers.image.title="watcher" \
      org.opencontainers.image.description="Watches Sequentum and automation runs, turns every status change into an event, alerts and fetches outputs." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first (cached while they stay the same), then watcher itself.
RUN --mount=type=bind,from=build,source=/deps,target=/deps \
    pip install --no-index --find-links=/deps --compile -r /deps/requirements.txt \
    && groupadd --system --gid 10001 watcher \
    && useradd --system --uid 10001 --gid watcher --home-dir /var/lib/watcher \
       --no-create-home --shell /usr/sbin/nologin watcher \
    && install -d -o watcher -g watcher -m 0700 /var/lib/watcher \
    && install -d -m 0755 /etc/watcher
RUN --mount=type=bind,from=build,source=/app,target=/app \
    pip install --no-index --no-deps --compile /app/*.whl

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/watcher \
    TMPDIR=/var/lib/watcher \
    WATCHER_CONFIG=/etc/watcher/watcher.toml \
    WATCHER_STATE_PATH=/var/lib/watcher/state.db \
    WATCHER_EVENTS_PATH=/var/lib/watcher/events.jsonl \
    WATCHER_LOG_FORMAT=json \
    WATCHER_HTTP__LISTEN=0.0.0.0:9465

USER 10001:10001
WORKDIR /var/lib/watcher
VOLUME ["/var/lib/watcher"]
EXPOSE 9465
STOPSIGNAL SIGTERM

# The port is taken from WATCHER_HTTP__LISTEN, so a different one needs no new healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('WATCHER_HTTP__LISTEN', '').rpartition(':')[2] or '9465'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["watcher"]
CMD ["run"]

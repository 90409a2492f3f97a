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

ARG PYTHON=3.11

# --- build: a wheel of watcher and of every dependency ------------------------------------------
FROM python:${PYTHON}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watcher ./watcher
COPY watcher_sim ./watcher_sim
RUN pip wheel --wheel-dir /wheels .

# --- runtime: slim Python, the wheels, a non-root user --------------------------------------------
FROM python:${PYTHON}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --compile watcher \
    && groupadd --system --gid 10001 watcher \
    && useradd --system --uid 10001 --gid watcher --home-dir /var/lib/watcher \
       --no-create-home --shell /usr/sbin/nologin watcher \
    && install -d -o watcher -g watcher -m 0700 /var/lib/watcher \
    && install -d -m 0755 /etc/watcher

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

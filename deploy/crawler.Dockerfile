# Crawler worker (queue `crawl`): core + [crawler], no torch.
# Build from the repository root: docker build -f deploy/<name>.Dockerfile .
# The base image; a mirrored or locally built one (offline labs, registry proxies) is given with
# --build-arg PYTHON_IMAGE=... (docs/DEPLOY.md, "Offline or behind a mirror").
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm
FROM ${PYTHON_IMAGE} AS build
# pip compiles bytecode as it installs: the runtime user cannot write the venv, and without .pyc files every
# process (a Celery worker, the filter's forkserver) compiled the libraries it imports from source again.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md deploy/constraints.txt ./
COPY services ./services
# simple_image_download pins python-magic-bin, which has no Linux build; its real needs are in [crawler].
RUN --mount=type=cache,target=/root/.cache/pip pip install --constraint constraints.txt ".[crawler]" \
    && pip install --no-deps simple_image_download==0.5

FROM ${PYTHON_IMAGE}
# libmagic1: python-magic sniffs the type of downloaded bytes.
# Distribution package versions are not pinned: the security archive replaces them, so a pin would break the
# build rather than make it reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/worker_healthcheck.py deploy/http_healthcheck.py /app/deploy/
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GHIBLI_DATA_DIR=/data
WORKDIR /app
USER 10001
CMD ["celery", "-A", "services.common.celery_app", "worker", "-Q", "crawl", "--hostname", "crawl@%h", "--pool", "solo"]

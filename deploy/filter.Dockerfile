# Filter worker (queue `filter`): core + [filter] (OpenCV headless, imagehash, Tesseract OCR), no torch.
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
# The text-detection model (PP-OCRv4 DB) ships in rapidocr_onnxruntime's wheel; onnxruntime (in [filter]) runs it,
# and the wheel's own needs (opencv-python, which wants libGL) are not installed.
RUN --mount=type=cache,target=/root/.cache/pip pip install --constraint constraints.txt ".[filter]" \
    && pip install --no-deps rapidocr_onnxruntime==1.4.4

FROM ${PYTHON_IMAGE}
# tesseract-ocr (with its English data) finds text and watermarks.
# Distribution package versions are not pinned: the security archive replaces them, so a pin would break the
# build rather than make it reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/worker_healthcheck.py deploy/http_healthcheck.py /app/deploy/
# numba caches the near-duplicate search's compiled code; the installed source tree is not writable.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GHIBLI_DATA_DIR=/data NUMBA_CACHE_DIR=/tmp/numba-cache
WORKDIR /app
USER 10001
# solo pool: the filter runs its own process pool, and Celery's prefork children may not fork.
CMD ["celery", "-A", "services.common.celery_app", "worker", "-Q", "filter", "--hostname", "filter@%h", "--pool", "solo"]

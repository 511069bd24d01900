# Trainer worker (queue `train`): diffusers + peft + accelerate LoRA training on both GPUs; core + [trainer].
# Build from the repository root: docker build -f deploy/<name>.Dockerfile .
# The CUDA *base* image (driver hooks, NVIDIA_* variables) is enough: PyPI's Linux torch wheel is the
# CUDA 13.0 build and installs its own CUDA libraries, which a -runtime base would only duplicate.
# CUDA 13 needs an NVIDIA driver >= 580 on the host; RTX 3090s (sm_86) are supported.
# The base image; a mirrored or locally built one (offline labs, registry proxies) is given with
# --build-arg CUDA_IMAGE=... (docs/DEPLOY.md, "Offline or behind a mirror").
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_IMAGE} AS build
# Distribution package versions are not pinned: the security archive replaces them, so a pin would break the
# build rather than make it reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# pip compiles bytecode as it installs: the runtime user cannot write the venv, and without .pyc files every
# process (a Celery worker, the filter's forkserver) compiled the libraries it imports from source again.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY deploy/constraints.txt ./
# torch first, in a layer of its own: the same instructions in the three GPU images share it.
# TORCH_INDEX_URL: an extra index holding other torch builds of the pinned version, e.g. the CPU one
# (https://download.pytorch.org/whl/cpu) for a machine without GPUs; PyPI's default is the CUDA build.
ARG TORCH_INDEX_URL=""
RUN --mount=type=cache,target=/root/.cache/pip pip install --constraint constraints.txt \
    ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} torch
COPY pyproject.toml README.md ./
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/pip pip install --constraint constraints.txt ".[trainer]"

FROM ${CUDA_IMAGE}
# Distribution package versions are not pinned: the security archive replaces them, so a pin would break the
# build rather than make it reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data /cache/huggingface \
    && chown app:app /data /cache/huggingface
COPY --from=build /opt/venv /opt/venv
COPY deploy/worker_healthcheck.py deploy/http_healthcheck.py /app/deploy/
COPY deploy/accelerate /app/deploy/accelerate
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GHIBLI_DATA_DIR=/data HF_HOME=/cache/huggingface
WORKDIR /app
USER 10001
CMD ["celery", "-A", "services.common.celery_app", "worker", "-Q", "train", "--hostname", "train@%h", "--pool", "solo"]

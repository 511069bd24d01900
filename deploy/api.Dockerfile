# Gateway API image; also the pipeline worker's, and Flower's with EXTRAS=flower. Core + one extra, no torch.
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
ARG EXTRAS=api
RUN --mount=type=cache,target=/root/.cache/pip pip install --constraint constraints.txt ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/worker_healthcheck.py deploy/http_healthcheck.py /app/deploy/
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GHIBLI_DATA_DIR=/data
WORKDIR /app
USER 10001
EXPOSE 8000
CMD ["uvicorn", "--factory", "services.api.app:create_app", "--host", "0.0.0.0", "--port", "8000"]

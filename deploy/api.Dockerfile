# syntax=docker/dockerfile:1.7
# Gateway API image; also the pipeline worker's, and Flower's with EXTRAS=flower. Core + one extra, no torch.
# Build from the repository root: docker build -f deploy/<name>.Dockerfile .
FROM python:3.12.8-slim-bookworm AS build
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

FROM python:3.12.8-slim-bookworm
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/worker_healthcheck.py /app/deploy/worker_healthcheck.py
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GHIBLI_DATA_DIR=/data
WORKDIR /app
USER 10001
EXPOSE 8000
CMD ["uvicorn", "--factory", "services.api.app:create_app", "--host", "0.0.0.0", "--port", "8000"]

# The SyncFlow code-location image: serves syncflow_dagster.definitions over gRPC and runs
# Dagster runs (K8sRunLauncher reuses this image for run pods).
# Build stage: the wheel, with its three C extensions (the XXH3/BLAKE3 hash loop, the
# text-number scan and the delta's key join), needs a compiler; the runtime image does not.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY syncflow_core ./syncflow_core
COPY syncflow_dagster ./syncflow_dagster
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/home \
    SYNCFLOW_REQUIRE_CONFIG=1

WORKDIR /opt/syncflow
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
    && mkdir -p "$DAGSTER_HOME" \
    && useradd --create-home --uid 10001 syncflow \
    && chown -R syncflow "$DAGSTER_HOME"
COPY deploy/dagster-postgres.yaml /opt/dagster/home/dagster.yaml

# SYNCFLOW_REQUIRE_CONFIG=1: the code location refuses to load unless SYNCFLOW_CONFIG names
# your syncflow.yaml (or says `demo` for the bundled demo config) - never the demo by accident.
USER syncflow
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-m", "syncflow_dagster.definitions", "-h", "0.0.0.0", "-p", "3030"]

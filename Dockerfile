# syntax=docker/dockerfile:1
# The leadscore API image: a uv builder stage makes the virtual environment from uv.lock, and a slim runtime
# stage runs it as a non-root user. Build: docker build -t leadscore . (scripts/container-test.sh builds and
# runs it without a Docker daemon). Both stages must use the same base: the venv links to its Python.

# The base: any Debian-based image with python3.11 on PATH. Name and tag are separate arguments so the tag is
# always explicit (a digest pin works too: BASE_TAG=3.11-slim-bookworm@sha256:...).
ARG BASE_IMAGE=python
ARG BASE_TAG=3.11-slim-bookworm
# uv's own image, only to copy the uv binary from; keep its version in step with the one that wrote uv.lock.
ARG UV_IMAGE=ghcr.io/astral-sh/uv
ARG UV_VERSION=0.13.9

FROM ${UV_IMAGE}:${UV_VERSION} AS uv

FROM ${BASE_IMAGE}:${BASE_TAG} AS builder
COPY --from=uv /uv /usr/local/bin/uv
# UV_SYSTEM_CERTS: trust the build host's CA store (corporate proxies); bytecode is compiled once here so the
# container starts without writing .pyc files to its read-only root.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_SYSTEM_CERTS=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /build
# Dependencies first, in their own layer: it is rebuilt only when uv.lock or pyproject.toml change.
# --no-default-groups leaves out dev, deploy and bench tools: the image holds the service and its dependencies.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=/build/uv.lock \
    --mount=type=bind,source=pyproject.toml,target=/build/pyproject.toml \
    uv sync --locked --no-default-groups --no-editable --no-install-project
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
# --no-editable installs leadscore (with its packaged model bundle) into the venv: /build is not needed later.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-default-groups --no-editable

FROM ${BASE_IMAGE}:${BASE_TAG} AS runtime
LABEL org.opencontainers.image.title="leadscore" \
      org.opencontainers.image.description="Lead scoring API: XGBoost scores for B2B leads." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid, so Kubernetes/ECS runAsNonRoot checks and volume ownership are predictable.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin leadscore \
    && mkdir -p /var/lib/leadscore/spool /var/lib/leadscore/tmp \
    && chown -R leadscore:leadscore /var/lib/leadscore
COPY --from=builder /opt/venv /opt/venv
# LEADSCORE_ENV is left to the deployment: the same image is promoted from dev to prod. Without a lake URI the
# rows go to a local lake beside the spool, so `docker run IMAGE` works with no settings at all.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADSCORE_SPOOL_DIR=/var/lib/leadscore/spool \
    LEADSCORE_LAKE_URI=/var/lib/leadscore/lake \
    TMPDIR=/var/lib/leadscore/tmp
# Acknowledged rows wait here until they reach the lake, and temporary files go here (the root filesystem may
# be read-only): mount a volume. Fargate and Docker copy the directories' ownership into a fresh volume.
VOLUME ["/var/lib/leadscore"]
WORKDIR /var/lib/leadscore
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); readiness is the load balancer's business. No curl in slim images.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health/live', timeout=4)"]
# Exec form: the server is PID 1 and receives SIGTERM itself, then drains within LEADSCORE_SHUTDOWN_GRACE_SECONDS.
ENTRYPOINT ["leadscore", "serve"]
# One worker per vCPU; the default task has half a vCPU. Override the whole CMD to change host, port or workers.
CMD ["--host", "0.0.0.0", "--port", "8000", "--workers", "1"]

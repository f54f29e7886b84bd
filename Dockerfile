# syntax=docker/dockerfile:1
# The leadscore API image: a builder stage makes the virtual environment from uv.lock, and a distroless runtime
# stage (no shell, no package manager) runs it as a non-root user. Build: docker build -t leadscore .
# (scripts/container-test.sh builds and runs it without a Docker daemon, on a locally built equivalent base).
#
# Both stages start from the same base, so the venv's python is the runtime's own interpreter (/usr/bin/python3.11)
# at the same path. The base has no shell: every RUN is in exec form and runs uv (a static binary) or Python.

# The base: distroless Python 3.11 on Debian 12, or any image with /usr/bin/python3.11 and CA certificates. Name
# and tag are separate arguments so the tag is always explicit; pin a digest in releases
# (BASE_TAG=nonroot@sha256:...). The tag's default user does not matter: both stages set their own.
ARG BASE_IMAGE=gcr.io/distroless/python3-debian12
ARG BASE_TAG=nonroot
# uv's own image, only to copy the uv binary from; keep its version in step with the one that wrote uv.lock.
ARG UV_IMAGE=ghcr.io/astral-sh/uv
ARG UV_VERSION=0.13.9

FROM ${UV_IMAGE}:${UV_VERSION} AS uv

FROM ${BASE_IMAGE}:${BASE_TAG} AS builder
COPY --from=uv /uv /usr/local/bin/uv
# UV_SYSTEM_CERTS: trust the build host's CA store (corporate proxies); bytecode is compiled once here so the
# container starts without writing .pyc files to its read-only root. UV_PYTHON is the runtime's interpreter.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/bin/python3.11 \
    UV_SYSTEM_CERTS=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_CACHE_DIR=/root/.cache/uv
# The distroless nonroot tag runs as uid 65532, and the build writes /opt/venv: this stage runs as root. Only
# the builder does (hadolint reads every stage's last USER as final); the runtime stage ends as uid 10001.
# hadolint ignore=DL3002
USER 0:0
WORKDIR /build
# Dependencies first, in their own layer: it is rebuilt only when uv.lock or pyproject.toml change.
# --no-default-groups leaves out dev, deploy and bench tools: the image holds the service and its dependencies.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=/build/uv.lock \
    --mount=type=bind,source=pyproject.toml,target=/build/pyproject.toml \
    ["uv", "sync", "--locked", "--no-default-groups", "--no-editable", "--no-install-project"]
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
# --no-editable installs leadscore (with its packaged model bundle) into the venv: /build is not needed later.
RUN --mount=type=cache,target=/root/.cache/uv \
    ["uv", "sync", "--locked", "--no-default-groups", "--no-editable"]
# The service's data directories, made here: the runtime stage has no shell (nor mkdir) to make them.
RUN ["/usr/bin/python3.11", "-c", "import os; os.makedirs('/data/spool'); os.makedirs('/data/tmp')"]

FROM ${BASE_IMAGE}:${BASE_TAG} AS runtime
LABEL org.opencontainers.image.title="leadscore" \
      org.opencontainers.image.description="Lead scoring API: XGBoost scores for B2B leads." \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=10001:10001 /data /var/lib/leadscore
# LEADSCORE_ENV is left to the deployment: the same image is promoted from dev to prod. Without a lake URI the
# rows go to a local lake beside the spool, so `docker run IMAGE` works with no settings at all. uid 10001 has no
# passwd entry in a distroless base: HOME is set so nothing looks one up. numba (the explanation kernel) caches its
# compiled code beside the package by default, which is read-only here: it caches under the volume instead.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/nonexistent \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADSCORE_SPOOL_DIR=/var/lib/leadscore/spool \
    LEADSCORE_LAKE_URI=/var/lib/leadscore/lake \
    TMPDIR=/var/lib/leadscore/tmp \
    NUMBA_CACHE_DIR=/var/lib/leadscore/tmp/numba
# Acknowledged rows wait here until they reach the lake, and temporary files go here (the root filesystem may
# be read-only): mount a volume. Fargate and Docker copy the directories' ownership into a fresh volume.
VOLUME ["/var/lib/leadscore"]
WORKDIR /var/lib/leadscore
# A fixed numeric uid, so Kubernetes/ECS runAsNonRoot checks and volume ownership are predictable.
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); readiness is the load balancer's business. Python, not curl or a shell:
# the image has neither.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health/live', timeout=4)"]
# Exec form, Python itself: the server is PID 1 and receives SIGTERM itself, then drains within
# LEADSCORE_SHUTDOWN_GRACE_SECONDS.
ENTRYPOINT ["/opt/venv/bin/python", "-m", "leadscore", "serve"]
# One worker per vCPU; the default task has half a vCPU. Override the whole CMD to change host, port or workers.
CMD ["--host", "0.0.0.0", "--port", "8000", "--workers", "1"]

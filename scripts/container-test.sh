#!/usr/bin/env bash
# Build the leadscore image without a Docker daemon (buildah), check it has no shell and no package manager,
# run it (podman) the way ECS runs it (read-only root, non-root user, a volume for the spool), score the example
# request, send SIGTERM and require a clean exit (code 0). Prints every step. Takes a minute or two the first
# time, seconds after.
#
#   scripts/container-test.sh                 build on a local distroless-like base (no registry needed)
#   BASE_IMAGE=gcr.io/distroless/python3-debian12:nonroot UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9 scripts/container-test.sh
#                                             build on the published images (needs a registry)
# BASE_IMAGE and UV_IMAGE are full references (name:tag); they become the Dockerfile's name and tag arguments.
#
# Settings (environment): IMAGE (tag to build, default localhost/leadscore:test), PORT (loopback port,
# default 18080), WORKERS (uvicorn workers, default 1 as in the default ECS task), DEBIAN_MIRROR (for the
# local base; default: the machine's apt mirror), KEEP=1 keeps the container after the test for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/leadscore:test}"
PORT="${PORT:-18080}"
WORKERS="${WORKERS:-1}"
SUITE=bookworm
LOCAL_BASE="localhost/leadscore-base:${SUITE}-python3.11-distroless"
NAME="leadscore-container-test-$$"
started=$SECONDS

step() { printf '\n== [%3ss] %s\n' "$((SECONDS - started))" "$*"; }
fail() { printf 'container-test: FAILED: %s\n' "$*" >&2; exit 1; }

# This host has hybrid cgroups and no systemd in the sandbox: runc + cgroupfs + file events work where the
# defaults (crun, systemd) do not; the default ulimits are refused, so set them.
podman_run_flags=(--runtime runc --cgroup-manager cgroupfs --events-backend file)
podman() { command podman "${podman_run_flags[@]}" "$@"; }

ensure_tools() {
    local missing=()
    for tool in buildah podman runc debootstrap; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ "$(id -u)" -eq 0 ]] || fail "missing ${missing[*]}; install buildah podman runc debootstrap (needs root)"
    step "installing buildah podman runc debootstrap (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-cache show buildah podman runc debootstrap >/dev/null 2>&1 || apt-get update -qq
    apt-get install -y -qq --no-install-recommends buildah podman runc debootstrap >/dev/null
}

debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    # deb822 files first (URIs: line), then one-line sources; skip the security archive.
    local uri
    uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && !/security/ {print $2; exit}')"
    [[ -z "$uri" ]] && uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '/^deb / && !/security/ {print $2; exit}')"
    echo "${uri:-http://deb.debian.org/debian}"
}

# Without a reachable registry, gcr.io/distroless/python3-debian12 cannot be pulled: build an equivalent base
# once and keep it under a local tag. Debian bookworm's python3.11 (the interpreter distroless ships, at the same
# path, /usr/bin/python3.11) and CA certificates; then the shells, the package manager (apt, dpkg, debconf) and
# perl are removed, and the default user is distroless's nonroot uid, as in its :nonroot tag.
ensure_local_base() {
    if podman image exists "$LOCAL_BASE"; then
        step "base image $LOCAL_BASE: cached"
        return
    fi
    local mirror rootfs
    mirror="$(debian_mirror)"
    rootfs="$(mktemp -d)"
    # Removed on any exit, a failed debootstrap included (the tree is a few hundred MB).
    trap 'rm -rf "$rootfs"' EXIT
    step "base image $LOCAL_BASE: debootstrap $SUITE from $mirror, then no shell, no package manager (once)"
    debootstrap --variant=minbase --include=python3.11,ca-certificates "$SUITE" "$rootfs" "$mirror" >/dev/null
    # Bookworm merges /bin into /usr/bin; the package database (var/lib/dpkg/status) stays for image scanners.
    rm -rf "$rootfs"/usr/bin/{sh,bash,rbash,dash} "$rootfs"/usr/bin/{apt,apt-*,dpkg,dpkg-*,debconf*,perl*} \
        "$rootfs"/usr/sbin/{dpkg-*,update-*} "$rootfs"/usr/lib/apt "$rootfs"/usr/lib/dpkg "$rootfs"/etc/apt \
        "$rootfs"/usr/share/perl* "$rootfs"/usr/lib/x86_64-linux-gnu/perl* "$rootfs"/usr/share/debconf \
        "$rootfs"/var/cache/apt "$rootfs"/var/lib/apt "$rootfs"/var/cache/debconf
    tar -C "$rootfs" -c . | podman import --quiet --change 'USER 65532:65532' \
        --change 'ENTRYPOINT ["/usr/bin/python3.11"]' - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
}

# The Dockerfile copies uv from uv's image; without a registry, wrap the uv that wrote uv.lock in one.
ensure_local_uv() {
    local uv_bin version
    uv_bin="$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null)" \
        || fail "uv is not installed for python3 (python3 -m pip install uv)"
    version="$("$uv_bin" --version | awk '{print $2}')"
    UV_IMAGE="localhost/leadscore-uv:$version"
    if podman image exists "$UV_IMAGE"; then
        step "uv image $UV_IMAGE: cached"
        return
    fi
    step "uv image $UV_IMAGE from $uv_bin"
    local ctr
    ctr="$(buildah from scratch)"
    buildah copy "$ctr" "$uv_bin" /uv >/dev/null
    buildah commit --quiet --rm "$ctr" "$UV_IMAGE" >/dev/null
}

cleanup() {
    local status=$?
    if [[ "${KEEP:-0}" != 1 ]]; then
        command podman "${podman_run_flags[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
        command podman volume rm -f "$NAME-data" >/dev/null 2>&1 || true
    fi
    exit "$status"
}

ensure_tools
if [[ -z "${BASE_IMAGE:-}" ]]; then
    ensure_local_base
    BASE_IMAGE="$LOCAL_BASE"
fi
[[ -z "${UV_IMAGE:-}" ]] && ensure_local_uv

# name:tag -> the two build arguments (the tag is what follows the last ':' after the last '/').
split_ref() {
    local ref=$1 name_arg=$2 tag_arg=$3
    [[ "${ref##*/}" == *:* ]] || fail "$ref has no tag (want name:tag)"
    build_flags+=(--build-arg "$name_arg=${ref%:*}" --build-arg "$tag_arg=${ref##*:}")
}

step "build $IMAGE (buildah, base $BASE_IMAGE, uv $UV_IMAGE)"
build_flags=(--isolation chroot --layers --format docker)
split_ref "$BASE_IMAGE" BASE_IMAGE BASE_TAG
split_ref "$UV_IMAGE" UV_IMAGE UV_VERSION
# Local images are never pulled; published ones are pulled when missing.
[[ "$BASE_IMAGE" == localhost/* ]] && build_flags+=(--pull-never)
# RUN steps reach PyPI: give them the host's CA bundle (a TLS-inspecting proxy's CA lives there).
if [[ -n "${SSL_CERT_FILE:-}" && -f "$SSL_CERT_FILE" ]]; then
    build_flags+=(-v "$SSL_CERT_FILE:/etc/ssl/certs/ca-certificates.crt:ro")
fi
build_log="$(mktemp)"
if ! buildah bud "${build_flags[@]}" -t "$IMAGE" . >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    rm -f "$build_log"
    fail "image build failed"
fi
rm -f "$build_log"
podman image inspect "$IMAGE" --format \
    'image {{.Id}}: {{.Size}} bytes, user {{.Config.User}}, entrypoint {{.Config.Entrypoint}} {{.Config.Cmd}}'
podman image inspect "$IMAGE" --format 'healthcheck {{.Config.Healthcheck.Test}}'
echo "image size: $(( $(podman image inspect "$IMAGE" --format '{{.Size}}') / 1000000 )) MB"

step "no shell and no package manager in the image"
# A shell as the entrypoint must fail to start: there is none to run.
if out="$(podman run --rm --no-healthcheck --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
        --entrypoint /bin/sh "$IMAGE" -c 'echo shell ran' 2>&1)"; then
    fail "podman run --entrypoint /bin/sh succeeded: $out"
fi
echo "podman run --entrypoint /bin/sh: refused ($(grep -o 'no such file or directory' <<<"$out" | head -n 1 || echo "$out"))"
# Every file in the image's program directories, searched for shells, package managers and script interpreters
# other than Python.
podman run --rm -i --no-healthcheck --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    --entrypoint /usr/bin/python3.11 "$IMAGE" - <<'PY' || fail "a shell or package manager is in the image"
import os, sys

dirs = [d for d in ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/opt/venv/bin")
        if os.path.isdir(d)]
banned = {"sh", "bash", "dash", "ash", "rbash", "zsh", "ksh", "busybox", "apt", "apt-get", "dpkg", "perl", "rpm", "yum"}
names = sorted({n for d in dirs for n in os.listdir(d)})
print(f"{len(names)} programs in {', '.join(dirs)}, of which Python: {' '.join(n for n in names if n.startswith('python'))}")
found = sorted(banned & set(names))
print(f"shells and package managers found: {' '.join(found) or 'none'}")
sys.exit(1 if found else 0)
PY

trap cleanup EXIT
# Run it as ECS does: prod settings (API keys required, EMF metrics on stdout), read-only root, the spool on a
# volume. The key is made here for this run only; the container gets its hash, as from Secrets Manager.
step "run $NAME: LEADSCORE_ENV=prod, fresh API key, read-only root, $WORKERS worker(s), 127.0.0.1:$PORT -> 8000"
read -r API_KEY KEY_ENTRY < <(python3 -m uv run --no-sync python -c \
    'from leadscore.api.security import generate_key; k, e = generate_key("container-test"); print(k, e.entry())')
podman volume create "$NAME-data" >/dev/null
# No systemd here to schedule health checks: they run on demand (podman healthcheck run) below, and podman's
# complaint that it cannot reach systemd is filtered out.
podman run -d --name "$NAME" \
    --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    --health-interval disable \
    --read-only \
    -v "$NAME-data:/var/lib/leadscore" \
    -p "127.0.0.1:$PORT:8000" \
    -e LEADSCORE_ENV=prod \
    -e LEADSCORE_API_KEYS="$KEY_ENTRY" \
    -e LEADSCORE_EMF_INTERVAL_SECONDS=5 \
    "$IMAGE" --host 0.0.0.0 --port 8000 --workers "$WORKERS" 2> >(grep -v 'unable to get systemd connection' >&2) >/dev/null

# The host side of the test is plain Python (no curl needed); the request is the API's own example.
export CONTAINER_TEST_URL="http://127.0.0.1:$PORT" CONTAINER_TEST_KEY="$API_KEY"
step "wait for readiness, score the example request"
python3 -m uv run --no-sync python - <<'PY' || { podman logs "$NAME" 2>&1 | tail -n 30 >&2; fail "scoring failed"; }
import json, os, time, urllib.error, urllib.request

from leadscore.api.schemas import EXAMPLE_REQUEST
from leadscore.api.security import API_KEY_HEADER

base = os.environ["CONTAINER_TEST_URL"]
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(f"{base}/api/v1/health/ready", timeout=2) as r:
            print(f"GET /api/v1/health/ready: {r.status} {json.loads(r.read())['status']}")
            break
    except (OSError, urllib.error.URLError) as exc:
        if time.monotonic() > deadline:
            raise SystemExit(f"not ready after 60 s: {exc}")
        time.sleep(0.5)


def score(headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/api/v1/score",
        data=json.dumps(EXAMPLE_REQUEST).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


status, body = score({})
print(f"POST /api/v1/score without a key: {status} {body.get('code')}")
assert status == 401, body
status, body = score({API_KEY_HEADER: os.environ["CONTAINER_TEST_KEY"]})
print(f"POST /api/v1/score with the key: {status}")
assert status == 200, body
result = body["scores"][0]
assert body["status"] == "success" and body["total_leads"] == 1, body
assert 1 <= result["score"] <= 5 and abs(sum(result["probabilities"]) - 1) < 1e-6, result
print(
    f"request_id={body['request_id']} score={result['score']} confidence={result['confidence']:.3f} "
    f"probabilities={[round(p, 3) for p in result['probabilities']]} model_version={body['model_version']}"
)
# The predictor as deployed: oneDAL, small calls walked (numba's compiled kernel, cached on the volume: the root
# is read-only), both checked against XGBoost at load. A fallback would be said here, not hidden.
request = urllib.request.Request(f"{base}/api/v1/model", headers={API_KEY_HEADER: os.environ["CONTAINER_TEST_KEY"]})
with urllib.request.urlopen(request, timeout=10) as r:
    model = json.loads(r.read())
print(f"predictor: {model['predictor']} (model: {model['predictor_model']})")
assert model["predictor"].startswith("onedal") and "leadscore tree walk" in model["predictor"], model
assert model["predictor_fallback_reason"] is None, model
PY

step "HEALTHCHECK of the image (run inside the container)"
podman healthcheck run "$NAME" && echo "healthcheck: healthy"
echo "process 1: $(podman top "$NAME" user pid args | awk 'NR == 2 {$1=$1; print}')"

step "SIGTERM, wait for exit"
stop_started=$SECONDS
podman kill --signal TERM "$NAME" >/dev/null
exit_code="$(podman wait "$NAME")"
echo "exit code: $exit_code after $((SECONDS - stop_started)) s"
podman logs "$NAME" 2>&1 | grep -E '"event":"(lake_committed|lake_flushed|Application shutdown complete.)"' || true
echo "EMF lines on stdout: $(podman logs "$NAME" 2>/dev/null | grep -c '"_aws"' || true)"
[[ "$exit_code" == 0 ]] || fail "container exited with $exit_code after SIGTERM (want 0)"

step "the scored row is in the lake's table on the volume"
rows="$(podman run --rm --no-healthcheck --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    -v "$NAME-data:/var/lib/leadscore" -e LEADSCORE_ENV=prod \
    --entrypoint /opt/venv/bin/python "$IMAGE" -m leadscore lake query \
    "SELECT count(*) AS n FROM lead_score_prod" --output csv | tail -n 1 | tr -d "\r")"
echo "rows in the Iceberg table: ${rows:-none}"
[[ "$rows" == 1 ]] || fail "the lake's table holds ${rows:-no} rows after shutdown (want the 1 scored lead)"
step "container test passed"

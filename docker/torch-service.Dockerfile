# syntax=docker/dockerfile:1.7
# One image recipe for every torch model service (xtts, chatterbox: both pin torch 2.6.0).
# Build from the repo root, naming the workspace package and its port:
#   docker build -f docker/torch-service.Dockerfile \
#     --build-arg PACKAGE=genstack-xtts --build-arg PORT=8020 .
# torch and torchaudio (CUDA builds) come with the base image; every other package comes from
# uv.lock, so the image runs what the tests ran. The image runs the package's console script
# (named like the package); the command (serve, worker) comes from compose.yaml.
# Base images by exact tag; pin them by digest (tag@sha256:...) on a host that can pull them.
# uv is the Makefile's UV_VERSION (tests/test_config_and_images.py keeps the two equal).
ARG TORCH_IMAGE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# Only the lock and the pyproject.toml files: the dependency layer below is rebuilt when they
# change, not when source does (BuildKit compares the copied files, not this stage's input).
FROM ${TORCH_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name pyproject.toml ! -name uv.lock -delete

FROM ${TORCH_IMAGE} AS build
ARG PACKAGE
COPY --from=uv /uv /usr/local/bin/uv
# package-conflicts: uv.lock forks for chatterbox's pins (the Makefile sets it too).
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PREVIEW_FEATURES=package-conflicts
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY --from=manifests /src ./
# The venv sees the base image's torch (system site packages); the lock's torch, torchaudio
# and the CUDA wheels (nvidia-*-cuNN) they pull in are left out rather than installed twice.
# nvidia-ml-py (NVML, for genstack.provision.gpu) is not a CUDA wheel and stays.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --no-dev --no-hashes --no-emit-workspace --package "${PACKAGE}" \
        --no-emit-package torch --no-emit-package torchaudio --no-emit-package triton \
    | grep -v -E '^nvidia-[a-z0-9-]+-cu[0-9]+==' > /tmp/requirements.txt \
    && uv venv --system-site-packages --python "$(command -v python)" /opt/venv \
    && uv pip install --python /opt/venv/bin/python --no-deps -r /tmp/requirements.txt
# Then the workspace packages (./libs/..., ./services/...) the package needs, from source.
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --no-dev --no-editable --no-hashes --package "${PACKAGE}" \
    | grep -E '^\./' > /tmp/workspace.txt \
    && uv pip install --python /opt/venv/bin/python --no-deps -r /tmp/workspace.txt \
    && "/opt/venv/bin/${PACKAGE}" --help >/dev/null \
    && /opt/venv/bin/python -c "import torch, torchaudio; assert torch.__version__.startswith('2.6.0'), torch.__version__"

FROM ${TORCH_IMAGE}
ARG PACKAGE
ARG PORT
ARG HEALTH_PATH=/healthz
# One uid for every genstack image, so they share the outputs volume.
RUN groupadd --gid 10001 genstack \
    && useradd --uid 10001 --gid genstack --no-create-home --shell /usr/sbin/nologin genstack \
    && mkdir -p /data/outputs /data/models /data/voices /tmp/genstack \
    && chown -R genstack:genstack /data /tmp/genstack
COPY --from=build /opt/venv /opt/venv
# A fixed name for the package's console script, so ENTRYPOINT stays in exec form.
RUN ln -s "/opt/venv/bin/${PACKAGE}" /usr/local/bin/genstack-service
# The settings' defaults already point at /data/... (outputs, models/<service>, voices).
# numba (librosa) and matplotlib want writable caches; the home directory is not.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/genstack/numba MPLCONFIGDIR=/tmp/genstack/mpl \
    GENSTACK_HEALTH_URL=http://127.0.0.1:${PORT}${HEALTH_PATH}
USER 10001:10001
EXPOSE ${PORT}
# /healthz answers once the process is up (the model may still load: /readyz tells that).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['GENSTACK_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["genstack-service"]
CMD ["--help"]

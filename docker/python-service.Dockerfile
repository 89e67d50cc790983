# syntax=docker/dockerfile:1.7
# One image recipe for every CPU-only genstack service (gateway, uploader; the comfyui bridge
# next). Build from the repo root, naming the workspace package and its port:
#   docker build -f docker/python-service.Dockerfile \
#     --build-arg PACKAGE=genstack-gateway --build-arg PORT=8080 --build-arg HEALTH_PATH=/readyz .
# The image runs the package's console script (named like the package); the command (serve,
# run, ...) comes from compose.yaml or `docker run IMAGE COMMAND`.
# Base images by exact tag; pin them by digest (tag@sha256:...) on a host that can pull them.
# uv is the Makefile's UV_VERSION (tests/test_config_and_images.py keeps the two equal).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# Only the lock and the pyproject.toml files: the dependency layer below is rebuilt when they
# change, not when source does (BuildKit compares the copied files, not this stage's input).
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name pyproject.toml ! -name uv.lock -delete

FROM ${PYTHON_IMAGE} AS build
ARG PACKAGE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /src
# The lock file decides every version; only this package and what it needs are installed.
COPY --from=manifests /src ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${PACKAGE}"
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${PACKAGE}" \
    && "/opt/venv/bin/${PACKAGE}" --help >/dev/null

FROM ${PYTHON_IMAGE}
ARG PACKAGE
ARG PORT
ARG HEALTH_PATH=/healthz
# One uid for every genstack image, so they share the outputs and storage volumes.
RUN groupadd --gid 10001 genstack \
    && useradd --uid 10001 --gid genstack --no-create-home --shell /usr/sbin/nologin genstack \
    && mkdir -p /data/outputs /data/storage \
    && chown -R genstack:genstack /data
COPY --from=build /opt/venv /opt/venv
# A fixed name for the package's console script, so ENTRYPOINT stays in exec form.
RUN ln -s "/opt/venv/bin/${PACKAGE}" /usr/local/bin/genstack-service
# The settings' defaults already point at /data/outputs and /data/storage.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    GENSTACK_HEALTH_URL=http://127.0.0.1:${PORT}${HEALTH_PATH}
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['GENSTACK_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["genstack-service"]
CMD ["--help"]

# syntax=docker/dockerfile:1
# The ILCS inspection service image; `docker compose up` builds it (README, "Deployment").
# BuildKit is needed (RUN --mount), the default builder of docker compose v2 and Docker 23+.
#
# Three stages, ordered so that neither a code change nor a version bump reinstalls a dependency:
#   deps    - a venv with the pinned torch/torchvision, then requirements.lock (deploy/lock.sh writes it)
#   wheel   - the project (model_zoo, service, the `ilcs` command, the shipped checkpoint) as a wheel
#   runtime - the slim base, the deps venv, the wheel, a non-root user
# A fixed Python release on a fixed Debian, not the moving 3.11-slim (digest pinning: README, "The image").
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
# Must equal the pins in pyproject.toml (tests/deploy/test_dockerfile.py checks).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# Where torch comes from: the CPU-only wheels by default (an image of about 1 GB); PyPI's default
# wheel is the CUDA build (~5.7 GB), which docker-compose.gpu.yml builds with TORCH_INDEX_URL=https://pypi.org/simple.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Its own layer: the largest, changed least.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}
# The other dependencies, pinned, from the lock file alone: pyproject.toml (whose version changes with
# every release) is not copied here, so a version bump rebuilds only the wheel below.
WORKDIR /build
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock \
    && pip check

FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ilcs_cli.py ./
COPY model_zoo ./model_zoo
COPY service ./service
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN groupadd --system --gid 10001 ilcs \
    && useradd --system --uid 10001 --gid ilcs --create-home --home-dir /home/ilcs --shell /usr/sbin/nologin ilcs
COPY --from=deps /opt/venv /opt/venv
# The project without its dependencies (already in the venv); the wheel is bind-mounted, so it adds no layer.
# /opt/ilcs/checkpoints names the shipped checkpoint's folder inside the package; the build fails if it is missing.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps /wheels/*.whl \
    && mkdir -p /opt/ilcs \
    && ln -s "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/model_zoo/checkpoints" /opt/ilcs/checkpoints \
    && test -f /opt/ilcs/checkpoints/ilcs_neu.safetensors \
    && test -f /opt/ilcs/checkpoints/ilcs_neu.json
# The shipped checkpoint's ONNX graph, exported once here rather than at every start (ILCS_BACKEND=auto measures
# OpenVINO on it); the folder is the service's, so a mounted checkpoint's graph is added there on its first start.
ENV ILCS_ONNX_CACHE=/opt/ilcs/onnx
RUN python -m model_zoo.onnx_export /opt/ilcs/checkpoints/ilcs_neu /opt/ilcs/onnx \
    && chown -R 10001:10001 /opt/ilcs/onnx
# Numeric, so Kubernetes runAsNonRoot and the host can verify it is not root.
USER 10001:10001
WORKDIR /home/ilcs
# Another checkpoint: mount it and point ILCS_CHECKPOINT at its stem (README, "Another checkpoint").
# Where it binds is a setting like any other (ILCS_HOST, ILCS_PORT): the CMD passes no flags over them.
ENV ILCS_CHECKPOINT=/opt/ilcs/checkpoints/ilcs_neu \
    ILCS_HOST=0.0.0.0 \
    ILCS_PORT=8000
EXPOSE 8000
# Liveness only: /healthz answers as soon as the process serves; /readyz (503 until warmed up) is for load balancers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ILCS_PORT', '8000'), timeout=4)"]
CMD ["ilcs", "serve"]

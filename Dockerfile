# syntax=docker/dockerfile:1
# The ILCS inspection service image; `docker compose up` builds it (README, "Deployment").
# BuildKit is needed (RUN --mount), the default builder of docker compose v2 and Docker 23+.
#
# Three stages, ordered so that a code change never reinstalls torch:
#   deps    - a venv with the pinned torch/torchvision, then the project's other dependencies
#   wheel   - the project (model_zoo, training, service, the `ilcs` command, the shipped checkpoint) as a wheel
#   runtime - the slim base, the deps venv, the wheel, a non-root user
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS deps
# Must equal the pins in pyproject.toml (tests/deploy/test_dockerfile.py checks).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# PyPI's default torch wheel is the CUDA build: it runs on the GPU where the NVIDIA container
# runtime exposes one and falls back to the CPU everywhere else. Its own layer: the largest, changed least.
RUN pip install torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}
# The remaining dependencies are read from pyproject.toml, the one list of them.
WORKDIR /build
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt

FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ilcs_cli.py ./
COPY model_zoo ./model_zoo
COPY training ./training
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

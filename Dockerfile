# One image for all three memkube roles; the arguments choose the role:
#   memkube operator run --all-namespaces
#   memkube scheduler --host 0.0.0.0 --port 8786
#   memkube worker tcp://SCHEDULER:8786 --memory-limit 4Gi ...
#     (the container's process is then the worker's memory guard, which runs the worker as
#      its child, restarts it after a memory kill and forwards SIGTERM; see docs/internals.md)
# Extend it with the libraries your tasks import: see docs/install.md.
#
# Needs BuildKit (RUN --mount below), and no `# syntax=` line: the Dockerfile frontend built
# into BuildKit (Docker 20.10+, any buildx) supports everything used here, and a syntax line
# would make every build fetch a frontend image from a registry first.

ARG PYTHON_IMAGE=python:3.12-slim

# --- builder: wheels for memkube and every dependency, built where build tools may live ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# An offline build points pip at a local wheelhouse through these (hack/images/memkube.sh
# does); unset, pip uses its index as usual. They exist in this stage only.
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
COPY pyproject.toml README.md ./
COPY worker_image/ worker_image/
COPY operator/ operator/
RUN python -m pip wheel --wheel-dir /wheels ".[operator]"

# --- runtime: the wheels installed, nothing else from the source tree ---
FROM ${PYTHON_IMAGE} AS runtime
# MALLOC_TRIM_THRESHOLD_: glibc hands freed memory back to the OS promptly, so a worker's
# measured memory falls when it frees large values (the memory manager acts on it).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_TRIM_THRESHOLD_=65536
# The wheels are bind-mounted from the builder, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels "memkube[operator]" \
    && groupadd --system --gid 1000 memkube \
    && useradd --system --uid 1000 --gid 1000 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin memkube \
    && mkdir -p /spill \
    && chown 1000:1000 /spill \
    && memkube --help > /dev/null
# Pods mount a read-only root filesystem: scratch space and the spill store are volumes.
VOLUME ["/tmp", "/spill"]
WORKDIR /tmp
USER 1000:1000
ENTRYPOINT ["memkube"]
CMD ["--help"]

ARG BASE_IMAGE=python:3.12-slim

# Build stage: build the wheel, install it with its dependencies into /opt/venv.
# Needs only Python >= 3.11 with venv; every dependency ships a binary wheel, so no compiler.
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 needed, got " + sys.version)'
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install /dist/*.whl \
 && /opt/venv/bin/pip uninstall -y pip setuptools \
 && /opt/venv/bin/signalwire-video-exporter --version \
 && mkdir -p /var/lib/signalwire-video-exporter

# Runtime stage: the base image plus the virtualenv; no pip, no wheel, no build tools.
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
# The source commit, shown as the revision label of signalwire_video_exporter_build_info:
# --build-arg REVISION=$(git rev-parse HEAD)
ARG REVISION=unknown
LABEL org.opencontainers.image.title="signalwire-video-exporter" \
      org.opencontainers.image.description="Prometheus exporter for SignalWire Video room sessions: activity, capacity, cost and exporter health." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /opt/venv /opt/venv
# The state file's default place (opt-in: --state-file /var/lib/signalwire-video-exporter/state.json);
# mount a volume here so it survives the container and the root filesystem can stay read-only.
COPY --from=build --chown=65534:65534 /var/lib/signalwire-video-exporter /var/lib/signalwire-video-exporter
ENV PATH=/opt/venv/bin:$PATH \
    SIGNALWIRE_VIDEO_EXPORTER_REVISION=${REVISION} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65534:65534
WORKDIR /var/lib/signalwire-video-exporter
EXPOSE 10092
# Liveness on the default listen address; no curl in the image, so Python's urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10092/-/healthy', timeout=4)"]
ENTRYPOINT ["signalwire-video-exporter"]

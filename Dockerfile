# quantum-exec image: `docker build -t quantum-exec .`
# Runs `quantum-exec serve` as UID 10001; configuration comes from QUANTUM_* variables and the
# credentials from the environment or from files in $CREDENTIALS_DIRECTORY (e.g. Docker secrets
# mounted at /run/secrets). Nothing secret is baked in.
# Pin the digest too when your registry policy asks for it: python:3.11.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/quantum-exec
# Dependencies first, pinned with their hashes by the lock (pip refuses any other file), so a code
# change does not re-download them. The project itself is built with the locked setuptools.
COPY requirements.lock ./
RUN /opt/quantum-exec/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY services ./services
RUN /opt/quantum-exec/bin/pip install --no-deps --no-build-isolation . \
    && /opt/quantum-exec/bin/pip check \
    && /opt/quantum-exec/bin/quantum-exec --version

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="quantum-exec" \
      org.opencontainers.image.description="TradeIntents from a Redis stream to protected Binance USD-M futures positions"
# The embedded Redis keeps its data (and the paper account) in QUANTUM_STATE_DIR, a volume owned
# by the service's user: a restarted container answers every intent the last one took.
RUN groupadd --system --gid 10001 quantum \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin quantum \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/quantum-exec
COPY --from=build /opt/quantum-exec /opt/quantum-exec
ENV PATH=/opt/quantum-exec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QUANTUM_METRICS_HOST=0.0.0.0 \
    QUANTUM_METRICS_PORT=9108 \
    QUANTUM_UNIT_NAME=container \
    QUANTUM_STATE_DIR=/var/lib/quantum-exec
VOLUME ["/var/lib/quantum-exec"]
USER 10001:10001
WORKDIR /tmp
EXPOSE 9108
# Ready = Redis reachable, consumer group present, exchange rules loaded (see /readyz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["quantum-exec", "check"]
# Exec form: quantum-exec is PID 1 and receives SIGTERM itself, so in-flight intents drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["quantum-exec"]
CMD ["serve"]

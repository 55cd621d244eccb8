# syntax=docker/dockerfile:1
# One container: the Databricks Gateway (Python) and the Express front server (Node),
# started together by scripts/start.sh under tini.

FROM python:3.11-slim-bookworm AS python-deps
WORKDIR /build
COPY requirements.lock pyproject.toml README.md ./
COPY gateway ./gateway
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.lock \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .

FROM node:20-bookworm-slim AS node-deps
WORKDIR /app
COPY clients/node ./clients/node
COPY examples/express-app/package.json examples/express-app/package-lock.json ./examples/express-app/
WORKDIR /app/clients/node
RUN npm ci --omit=dev --no-audit --no-fund
WORKDIR /app/examples/express-app
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim-bookworm
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=node-deps /usr/local/bin/node /usr/local/bin/node
COPY --from=python-deps /opt/venv /opt/venv
WORKDIR /app
COPY --from=node-deps /app/clients/node ./clients/node
COPY --from=node-deps /app/examples/express-app/node_modules ./examples/express-app/node_modules
COPY --chown=root:root scripts ./scripts
COPY examples/express-app ./examples/express-app
# FRONT_HOST: the front server listens on every interface here (start.sh's default is loopback).
ENV FRONT_HOST=0.0.0.0 \
    GATEWAY_VENV=/opt/venv \
    GATEWAY_SKIP_INSTALL=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=3000 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('DATABRICKS_APP_PORT', os.environ.get('PORT', '3000')), timeout=4)"]
ENTRYPOINT ["tini", "--"]
CMD ["bash", "scripts/start.sh"]

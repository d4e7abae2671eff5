# The Engram engine: `engram worker` or `engram gateway` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engram ./engram
RUN pip install . && useradd --system --uid 10001 engram
USER engram

ENTRYPOINT ["engram"]
CMD ["gateway", "--host", "0.0.0.0"]

# The worker + HTTP API image. The Temporal server runs separately (see docker-compose.yml), so the
# embedded dev server is not used: ESCALATIONS_TEMPORAL_ADDRESS must be set.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY config config
COPY cli cli
COPY api api
RUN pip install --no-cache-dir . && useradd --create-home escalations
USER escalations
ENV ESCALATIONS_API_HOST=0.0.0.0 ESCALATIONS_LOG_FORMAT=json
EXPOSE 8000
CMD ["escalations", "run"]

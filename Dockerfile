# The image of the worker, the HTTP API and the codec server: one image, one process per container
# (`docker run IMAGE worker|api|codec-server`; docker-compose.yml runs each as its own service).
# Python dependencies are installed from requirements.lock with their hashes; the embedded Temporal dev
# server (the `temporal` CLI binary, extra `embedded`) is not in the image: ESCALATIONS_TEMPORAL_ADDRESS
# must name a Temporal cluster.
FROM python:3.11.14-slim-bookworm
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . /app/src
RUN pip install --no-cache-dir --no-deps /app/src && rm -rf /app/src \
    && useradd --create-home --uid 10001 escalations
USER escalations
ENV ESCALATIONS_LOG_FORMAT=json PYTHONUNBUFFERED=1
EXPOSE 8000 8001 8081 9464
# SIGTERM reaches the process itself (exec form), which lets running activities finish before it exits.
ENTRYPOINT ["escalations"]
CMD ["worker"]

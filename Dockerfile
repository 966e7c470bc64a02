# The worker, API and bridge image: `aiworld worker|api|bridge`.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 aiworld
WORKDIR /app
COPY pyproject.toml README.md ./
COPY aiworld ./aiworld
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY bridge ./bridge
COPY rathena ./rathena
RUN pip install --no-cache-dir .

USER aiworld
ENV PYTHONUNBUFFERED=1
CMD ["aiworld", "worker"]

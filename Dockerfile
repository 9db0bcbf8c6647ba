# One image for every PyTake service: docker build --build-arg SERVICE=gateway .
FROM python:3.11-slim AS base
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "uv>=0.5"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
COPY tools ./tools
RUN uv sync --frozen --all-packages --no-dev
ENV PATH="/app/.venv/bin:$PATH" HTTP_HOST=0.0.0.0
RUN useradd --system --uid 10001 pytake
USER pytake
ARG SERVICE=gateway
ENV SERVICE=${SERVICE}
CMD ["sh", "-c", "exec pytake-${SERVICE} run"]

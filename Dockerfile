# The inferwatch sidecar image: `ghcr.io/inferwatch/inferwatch:<version>`.
# Runs `inferwatch exporter` (the sidecar) and `inferwatch webhook serve` (the injector); the
# base install plus the exporter extra only, so no pandas, fastapi or kubernetes client.
#   docker build -t ghcr.io/inferwatch/inferwatch:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inferwatch/ inferwatch/
COPY exporters/ exporters/
COPY dashboards/ dashboards/
COPY alerts/ alerts/
COPY slo/ slo/
COPY deploy/ deploy/
COPY simulators/ simulators/
COPY load/ load/
RUN pip install --no-cache-dir --prefix=/install ".[exporter]"

FROM python:3.11-slim
# Byte-compiled at build time: the root filesystem is read-only at run time.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
RUN python -m compileall -q /usr/local/lib/python3.11/site-packages/inferwatch \
    && groupadd --gid 65532 inferwatch \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin inferwatch
# Numeric, so Kubernetes can check runAsNonRoot without resolving a name.
USER 65532:65532
EXPOSE 9450
ENTRYPOINT ["inferwatch"]
CMD ["--help"]

# provisioner: one image for the worker replicas, the mock Node API and the simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md constraints.txt ./
COPY lua ./lua
COPY provisioner ./provisioner
# the wheel carries lua/ as the package provisioner.lua (setuptools package-dir)
RUN PIP_CONSTRAINT=/app/constraints.txt pip install . \
 && useradd --system --uid 10001 provisioner
USER provisioner

EXPOSE 8080 9100
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9100/healthz', timeout=2)" || exit 1
ENTRYPOINT ["provisioner"]
CMD ["run", "--metrics-port", "9100"]

# One image for every edgebus process: docker-compose.yml and k8s/ run it with the same
# commands `edgebus up` runs (python -m services.<name>, nats-server, containerd).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends containerd runc busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY edgebus ./edgebus
COPY services ./services
COPY examples ./examples
RUN pip install --no-cache-dir -c constraints.txt .

# The lab's OCI images (busybox, and the pod sandbox image), built offline: no registry needed.
RUN python -m edgebus.images /opt/edgebus/images

ENV PYTHONUNBUFFERED=1
EXPOSE 4222 7422 1883 8080 9090 10550

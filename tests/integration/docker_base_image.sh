#!/bin/sh
# Make a stand-in for the image's base (python:3.11-slim) where no registry can be reached but
# Debian's packages can: a minimal Debian 12 with its Python (3.11), venv and pip's CA settings
# of this machine, imported into the Docker daemon under the base image's name.
#   docker_base_image.sh [TAG]     (root; debootstrap; DOCKER_HOST names the daemon if needed)
# tests/integration/test_container_image.py builds and runs contrib/docker/Dockerfile on it.
set -eu
tag=${1:-python:3.11-slim}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" >/dev/null
# pip trusts its own CA bundle, not the system's: point it at the system's, which may hold a
# CA this machine's network needs (as /etc/pip.conf does here).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "$tag"

#!/usr/bin/env bash
# Installs what k8s/checks needs beside cargo: Helm's own library for Python (helm-python-sdk,
# which bundles Helm 4) in a venv outside the clone, so later runs reuse it and need no network.
# kubectl (with kustomize) comes with the machine image; its absence is reported, not hidden.
set -euo pipefail
venv="${PILLIVERY_HELM_VENV:-$HOME/.cache/pillivery-helm-venv}"
if ! "$venv/bin/python" -c 'import helm_python, yaml' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    # The package declares Python >= 3.12 but its library works on 3.11 (docs/deploy.md).
    "$venv/bin/pip" install --quiet --disable-pip-version-check --ignore-requires-python \
        'helm-python-sdk==0.2.2' 'pyyaml==6.0.*'
fi
"$venv/bin/python" -c 'import helm_python; print("helm-python-sdk", helm_python.__version__, "Helm", helm_python.helm_sdk_version())'
if ! kubectl kustomize --help >/dev/null 2>&1; then
    echo "kubectl with kustomize is needed by k8s/checks and is not installed" >&2
    exit 1
fi

#!/usr/bin/env python3
"""Helm's own engine, offline, for the deploy checks (k8s/checks) and for generating the
kustomize base: the PyPI package helm-python-sdk binds Helm 4's Go library, so rendering and
linting here is what `helm template` and `helm lint` do, with the chart's values.schema.json
enforced. No cluster is contacted.

    helm.py render CHART VALUES.yaml NAME NAMESPACE   -> {"manifests": {template: text}}
                                                         or {"error": "..."} (exit 0 both)
    helm.py lint CHART VALUES.yaml                     -> the lint report as JSON
    helm.py kustomize-base CHART VALUES.yaml OUT.yaml  -> writes the base's manifests
    helm.py envoy-config CHART VALUES.yaml OUT.yaml    -> writes the edge's Envoy config alone

Results are JSON on stdout so the Rust checks need no YAML of Helm's making to interpret.
"""

import json
import sys

import helm_python
import yaml


def load_values(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def render(chart, values, name, namespace):
    loaded = helm_python.Chart.load(chart)
    try:
        manifests = loaded.render(values, name=name, namespace=namespace, is_install=True)
    except helm_python.HelmError as error:
        return {"error": str(error)}
    return {"manifests": manifests}


# What only Helm uses: a release's bookkeeping labels and the hook annotations. In the
# kustomize base the migration Jobs are plain Jobs, deleted after they finish.
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
HELM_ANNOTATIONS = ("helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy")


def strip_helm(node):
    if isinstance(node, dict):
        for key in ("labels", "annotations"):
            block = node.get(key)
            if isinstance(block, dict):
                for name in HELM_LABELS + HELM_ANNOTATIONS:
                    block.pop(name, None)
                if not block:
                    node.pop(key)
        for value in node.values():
            strip_helm(value)
    elif isinstance(node, list):
        for value in node:
            strip_helm(value)


class BlockStyleDumper(yaml.SafeDumper):
    """Writes multi-line strings (the Envoy config in its ConfigMap) as readable blocks."""


def _represent_text(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


BlockStyleDumper.add_representer(str, _represent_text)


def kustomize_base(chart, values, out):
    result = render(chart, values, "pillivery", "pillivery")
    if "error" in result:
        sys.exit(f"rendering the kustomize base failed: {result['error']}")
    documents = []
    for template in sorted(result["manifests"]):
        if not template.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(result["manifests"][template]):
            if not document:
                continue
            strip_helm(document)
            # The namespace comes from the overlay (kustomize's `namespace:`).
            for subject in document.get("subjects", []):
                subject.pop("namespace", None)
            documents.append(document)
    header = (
        "# Generated from charts/pillivery with k8s/base/values.yaml by\n"
        "# `k8s/checks/helm.py kustomize-base` (see docs/deploy.md). Do not edit: change the\n"
        "# chart and regenerate; k8s/checks fails when this file is out of date.\n"
    )
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(header)
        handle.write(yaml.dump_all(documents, Dumper=BlockStyleDumper, sort_keys=False, width=100))


def envoy_config(chart, values, out):
    result = render(chart, values, "pillivery", "pillivery")
    if "error" in result:
        sys.exit(f"rendering the Envoy config failed: {result['error']}")
    for document in yaml.safe_load_all(result["manifests"]["pillivery/templates/edge.yaml"]):
        if document and document["kind"] == "ConfigMap":
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(document["data"]["envoy.yaml"])
            return
    sys.exit("the chart rendered no Envoy config (edge.enabled false?)")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    command = argv[1]
    if command == "render" and len(argv) == 6:
        print(json.dumps(render(argv[2], load_values(argv[3]), argv[4], argv[5])))
    elif command == "lint" and len(argv) == 4:
        print(json.dumps(helm_python.lint(argv[2], load_values(argv[3]))))
    elif command == "kustomize-base" and len(argv) == 5:
        kustomize_base(argv[2], load_values(argv[3]), argv[4])
    elif command == "envoy-config" and len(argv) == 5:
        envoy_config(argv[2], load_values(argv[3]), argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

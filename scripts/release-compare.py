"""Whether a Helm rendering holds the objects of a kustomize rendering (scripts/release.sh).

    release-compare.py INSTALL.yaml HELM.yaml

The Namespace object is the install file's own (Helm creates the release's namespace itself, with
`--create-namespace`); Helm's own labels (helm.sh/chart, app.kubernetes.io/managed-by: Helm,
app.kubernetes.io/instance) are set aside. Anything else that differs is printed, and exit 1.
"""
import difflib
import sys

import yaml

HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}
# Cluster-scoped kinds kustomize does not know as such: it gives them the kustomization's
# namespace, which the API server ignores.
CLUSTER_SCOPED = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def objects(path, drop_namespace):
    found = {}
    with open(path) as f:
        for obj in yaml.safe_load_all(f):
            if not obj or (drop_namespace and obj["kind"] == "Namespace"):
                continue
            meta = obj["metadata"]
            if obj["kind"] in CLUSTER_SCOPED:
                meta.pop("namespace", None)
            labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
            if labels:
                meta["labels"] = labels
            else:
                meta.pop("labels", None)
            found[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj
    return found


installed, helm = objects(sys.argv[1], True), objects(sys.argv[2], False)
problems = []
for key in sorted(set(installed) | set(helm)):
    if key not in helm:
        problems.append(f"{'/'.join(key)}: in {sys.argv[1]}, not rendered by the chart")
    elif key not in installed:
        problems.append(f"{'/'.join(key)}: rendered by the chart, not in {sys.argv[1]}")
    elif installed[key] != helm[key]:
        a = yaml.safe_dump(installed[key], sort_keys=True).splitlines()
        b = yaml.safe_dump(helm[key], sort_keys=True).splitlines()
        diff = "\n".join(difflib.unified_diff(a, b, sys.argv[1], "chart", lineterm=""))
        problems.append(f"{'/'.join(key)} differs:\n{diff}")
for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"the chart renders the {len(installed)} objects of {sys.argv[1]} (its Namespace aside)")

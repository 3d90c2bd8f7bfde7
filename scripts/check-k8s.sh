#!/usr/bin/env bash
# Checks k8s/ offline: the alert rules (promtool check rules), their unit
# tests (promtool test rules), the Grafana dashboard (valid JSON, every
# panel on the ${DS_PROMETHEUS} data source, every query valid PromQL) and
# every manifest against the Kubernetes schemas of one fixed version
# (kubernetes-validate, which ships the schemas: no cluster, no network).
# Installs promtool (Debian package `prometheus`) and kubernetes-validate
# (PyPI) when they are missing. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION="${K8S_VERSION:-1.30.0}"
KUBERNETES_VALIDATE_VERSION=1.37.0

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI)..." >&2
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
  # A Debian system Python refuses (PEP 668) what a pyenv or venv Python takes.
  "${pip_install[@]}" || "${pip_install[@]}" --break-system-packages
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "-- alert rules"
promtool check rules k8s/monitoring/rules.yaml
promtool test rules k8s/monitoring/rules.test.yaml

echo "-- dashboard"
python3 -m json.tool k8s/monitoring/dashboard.json >/dev/null
# Every query of the dashboard, its variables replaced by plain values,
# becomes a recording rule that promtool parses.
python3 - k8s/monitoring/dashboard.json "$scratch/dashboard-queries.yaml" <<'PY'
import json, sys

dashboard = json.load(open(sys.argv[1]))
errors, rules = [], []
names = {v["name"] for v in dashboard["templating"]["list"]}
if "DS_PROMETHEUS" not in names:
    errors.append("no DS_PROMETHEUS templating variable")

for v in dashboard["templating"]["list"]:
    if v["type"] == "query" and v.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        errors.append(f"variable {v['name']!r}: data source is not ${{DS_PROMETHEUS}}")

def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))

for p in panels(dashboard["panels"]):
    if p["type"] == "row":
        continue
    for where in [p] + p.get("targets", []):
        if where.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"panel {p['title']!r}: data source is not ${{DS_PROMETHEUS}}")
    if not p.get("targets"):
        errors.append(f"panel {p['title']!r}: no query")
    for t in p.get("targets", []):
        expr = t["expr"].replace("$__rate_interval", "5m")
        for name in sorted(names, key=len, reverse=True):
            expr = expr.replace("$" + name, ".*")
        if "$" in expr:
            errors.append(f"panel {p['title']!r}: unknown variable in {t['expr']!r}")
        rules.append({"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr})

for e in errors:
    print("error: dashboard:", e, file=sys.stderr)
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
sys.exit(1 if errors else 0)
PY
promtool check rules "$scratch/dashboard-queries.yaml" >/dev/null
echo "dashboard: valid JSON, queries parse"

echo "-- manifests (Kubernetes $K8S_VERSION, strict)"
manifests=()
while IFS= read -r f; do manifests+=("$f"); done < <(
  find k8s -path k8s/monitoring -prune -o -name '*.yaml' ! -name kustomization.yaml -print | sort
)
[ "${#manifests[@]}" -gt 0 ] || { echo "error: no manifest found in k8s/" >&2; exit 1; }
# kubernetes-validate only warns (and exits 0) on a kind it has no schema
# for, e.g. a misspelt one: treat that as a failure too.
out="$scratch/kubernetes-validate.out"
status=0
python3 -m kubernetes_validate -k "$K8S_VERSION" --strict "${manifests[@]}" >"$out" 2>&1 || status=$?
cat "$out"
if [ "$status" -ne 0 ] || grep -q '^WARN' "$out"; then
  echo "error: manifests did not validate" >&2
  exit 1
fi

# Every resource the kustomization lists exists.
for f in $(sed -n 's/^  - \(.*\.yaml\)$/\1/p' k8s/kustomization.yaml); do
  [ -f "k8s/$f" ] || { echo "error: k8s/kustomization.yaml lists missing $f" >&2; exit 1; }
done

echo "k8s checks passed"

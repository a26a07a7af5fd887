#!/usr/bin/env bash
# Renders every deployable kustomization under manifests/ into OUTDIR (default build/manifests):
# overlays/dev, overlays/prod, monitoring, examples -> OUTDIR/<name>.yaml.
# The base takes the CRDs from crds/ (their single source) as a kustomization, so plain
# `kubectl kustomize` (and `kubectl apply -k`) work.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build/manifests}"
kubectl="${KUBECTL:-$root/.venv/bin/kubectl}"
[ -x "$kubectl" ] || kubectl="$(command -v kubectl)"
mkdir -p "$out"
for dir in overlays/dev overlays/prod monitoring examples; do
  name="${dir##*/}"
  "$kubectl" kustomize "$root/manifests/$dir" > "$out/$name.yaml"
  echo "rendered manifests/$dir -> $out/$name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
done

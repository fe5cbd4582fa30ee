"""Configuration: one frozen dataclass per component, loaded from one YAML file.

``load_config("configs/demo.yaml")`` returns a :class:`RunConfig`; every section is optional and
falls back to its dataclass defaults. Unknown keys fail with the key, the file and the allowed
keys named.
"""

from __future__ import annotations

from recdistill.config.data import DataConfig, GeneratorConfig
from recdistill.config.loader import from_mapping, load_yaml, to_mapping
from recdistill.config.run import RunConfig, load_config

__all__ = [
    "DataConfig",
    "GeneratorConfig",
    "RunConfig",
    "from_mapping",
    "load_config",
    "load_yaml",
    "to_mapping",
]

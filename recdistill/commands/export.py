"""``recdistill export``: every trained model of a run -> its version folder ``export/<model>/``."""

from __future__ import annotations

from typing import Any

from recdistill.commands.stage_verb import register_stage_verb


def register(sub: Any) -> None:
    register_stage_verb(
        sub,
        "export",
        help="write every model's served version folder (ONNX, compiled trees, preprocessing), parity-checked",
        description="Export the run's teacher and students to runs/<name>/export/<model>/: the MLP students to "
        "ONNX, the GBDT students to compiled trees (LightGBM's predictor without a compiler), each beside a copy "
        "of the preprocessing; every folder is loaded back and checked against the trained model.",
    )

"""``recdistill init-schema``: kinds inferred from a sample, the label never guessed, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from recdistill.cli import main
from recdistill.data.infer_schema import infer_schema, label_candidates
from recdistill.data.schema import Schema
from recdistill.errors import RecDistillError


def movielens_style(n: int = 500, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user_id": rng.integers(1, 60, n),
            "movie_id": rng.integers(1, 400, n),
            "age": rng.integers(18, 70, n),
            "gender": rng.choice(["M", "F"], n).tolist(),
            "genres": ["|".join(str(g) for g in rng.integers(0, 19, rng.integers(1, 4))) for _ in range(n)],
            "timestamp": 880_000_000 + rng.integers(0, 10**6, n),
            "rating": rng.integers(1, 6, n),
            "source": ["web"] * n,
            "clicked": rng.integers(0, 2, n),
            "price": rng.lognormal(3, 1, n),
            "hist": [rng.integers(0, 400, rng.integers(0, 8)).tolist() for _ in range(n)],
        }
    )


def test_kinds_of_a_movielens_style_log() -> None:
    inferred = infer_schema(
        movielens_style(),
        source="ml.parquet",
        label="clicked",
        user="user_id",
        time="timestamp",
        ignore=["rating"],
    )
    raw = inferred.schema
    feats = {f["name"]: f for f in raw["features"]}
    assert feats["user_id"]["kind"] == "categorical" and feats["user_id"]["group"] == "user"
    assert feats["movie_id"]["kind"] == "categorical" and feats["movie_id"]["min_count"] == 2
    assert feats["age"] == {"name": "age", "group": "user", "kind": "dense"}
    assert feats["gender"]["kind"] == "categorical"
    assert (
        feats["genres"]["kind"] == "multi"
        and feats["genres"]["sep"] == "|"
        and feats["genres"]["max_len"] == 3
    )
    assert feats["price"]["kind"] == "dense" and feats["price"]["transform"] == "log1p"
    assert feats["hist"]["kind"] == "multi" and feats["hist"]["max_len"] == 7
    assert raw["ignore"] == ["timestamp", "rating", "source"]  # time, --ignore, constant
    assert raw["row_key"] is None and raw["user_id"] == "user_id" and raw["label"] == "clicked"
    why = {c.name: c.why for c in inferred.columns}
    assert why["source"] == "constant" and "id-like name" in why["movie_id"]
    assert Schema.from_dict(raw).keyed_by_position


def test_kinds_of_criteo_style_columns() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    df = pl.DataFrame(
        {
            "label": rng.integers(0, 2, n),
            "I1": np.floor(rng.exponential(50, n)).astype(np.int64),
            "I2": rng.integers(0, 5, n),
            "C1": [f"{x:08x}" for x in rng.integers(0, 2**32, n)],
            "C2": rng.integers(0, 2**40, n),
        }
    )
    feats = {f["name"]: f for f in infer_schema(df, source="d.tsv", label="label").schema["features"]}
    assert feats["I1"]["kind"] == "dense" and feats["I1"]["transform"] == "log1p"
    assert feats["I2"]["kind"] == "categorical"  # five distinct values
    assert feats["C1"]["kind"] == "categorical" and feats["C2"]["kind"] == "categorical"


def test_label_candidates() -> None:
    assert label_candidates(movielens_style()) == ["clicked"]


# -- bad input: each named with the file and the column ----------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"label": "click"}, "ml.parquet: --label names column 'click', which is not in the file"),
        ({"label": "rating"}, "ml.parquet: label column 'rating' holds values other than 0/1 (e.g. "),
        ({"label": "gender"}, "label column 'gender' holds String values (e.g. "),
        ({"label": "hist"}, "ml.parquet: --label 'hist' is a list column"),
        ({"label": "clicked", "dense": ["age"], "categorical": ["age"]}, "column 'age' is named twice (--categorical and --dense)"),
        ({"label": "clicked", "time": "clicked"}, "column 'clicked' is named twice (--label and --time)"),
        ({"label": "clicked", "time": "gender"}, "ml.parquet: time column 'gender': 500 values are neither a number nor a date"),
    ],
)  # fmt: skip
def test_bad_input(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(RecDistillError) as e:
        infer_schema(movielens_style(), source="ml.parquet", **kwargs)  # type: ignore[arg-type]
    assert fragment in str(e.value)


def test_cli_writes_schema_and_run_config_and_keeps_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "ml.parquet"
    movielens_style().write_parquet(log)
    out = tmp_path / "cfg" / "schema.json"
    assert main(["init-schema", str(log), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--label is required (recdistill never guesses the label); candidates: clicked" in err
    assert not out.exists()
    args = [
        "init-schema",
        str(log),
        "--label",
        "clicked",
        "--time",
        "timestamp",
        "--ignore",
        "rating",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "genres" in printed and "text lists separated by '|'" in printed and "distinct" in printed
    assert json.loads(out.read_text())["label"] == "clicked"
    cfg = yaml.safe_load((out.parent / "run.yaml").read_text())
    assert cfg["data"] == {
        "source": "files",
        "path": str(log),
        "schema": str(out),
        "split": {"by": "time", "column": "timestamp", "fractions": [0.8, 0.1, 0.1], "seed": 0},
    }
    assert main(args) == 2
    assert "exists; edit it, or pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_cli_glob_that_matches_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init-schema", str(tmp_path / "logs" / "*.csv"), "--label", "click"]) == 2
    assert "logs/*.csv: the glob matches no file" in capsys.readouterr().err

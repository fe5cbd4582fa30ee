from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recdistill.data.preprocess import Preprocessor, load_split
from recdistill.data.readers import CRITEO_CAT, CRITEO_INT, criteo_schema, iter_frames, read_frame
from recdistill.data.validate import validate_file
from recdistill.errors import DataError

CRITEO_LINES = [
    # label, 13 ints, 26 hex categoricals; empty = missing
    "1\t1\t5\t\t0\t1382\t4\t15\t2\t181\t1\t2\t\t2\t68fd1e64\t80e26c9b\tfb936136\t7b4723c4\t25c83c98\t7e0ccccf\tde7995b8\t1f89b562\ta73ee510\ta8cd5504\tb2cb9c98\t37c9c164\t2824a5f6\t1adce6ef\t8ba8b39a\t891b62e7\te5ba7672\tf54016b9\t21ddcdc9\tb1252a9d\t07b5194c\t\t3a171ecb\tc5c50484\te8b83407\t9727dd16",
    "0\t2\t0\t44\t1\t102\t8\t2\t2\t4\t1\t1\t\t4\t68fd1e64\tf0cf0024\t6f67f7e5\t41274cd7\t25c83c98\tfe6b92e5\t922afcc0\t0b153874\ta73ee510\t2b53e5fb\t4f1b46f3\t623049e6\td7020589\tb28479f6\te6c5b5cd\tc92f3b61\t07c540c4\tb04e4670\t21ddcdc9\t5840adea\t60f6221e\t\t3a171ecb\t43f13e8b\te8b83407\t731c3655",
    "0\t2\t0\t1\t14\t767\t89\t4\t2\t245\t1\t3\t3\t45\t287e684f\t0a519c5c\t02cf9876\tc18be181\t25c83c98\t7e0ccccf\tc78204a1\t0b153874\ta73ee510\t3b08e48b\t5f5e6091\t8fe001f4\taa655a2f\t07d13a8f\t6dc710ed\t36103458\t8efede7f\t3412118d\t\t\te587c466\tad3062eb\t3a171ecb\t3b183c5c\t\t",
    "0\t\t893\t\t\t4392\t\t0\t0\t0\t\t0\t\t\t68fd1e64\t2c16a946\ta9a87e68\t2e17d6f6\t25c83c98\tfe6b92e5\t2e8a689b\t0b153874\ta73ee510\tefea433b\te51ddf94\ta30567ca\t3516f6e6\t07d13a8f\t18231224\t52b8680f\t1e88c74f\t74ef3502\t\t\t6b3a5ca6\t\t3a171ecb\t9117a34a\t\t",
]


@pytest.fixture
def criteo_file(tmp_path: Path) -> Path:
    p = tmp_path / "day_0.tsv"
    p.write_text("\n".join(CRITEO_LINES) + "\n")
    return p


def test_criteo_reader_parses_and_marks_missing(criteo_file: Path) -> None:
    df = read_frame(criteo_file)
    assert df.columns == ["row_id", "label", *CRITEO_INT, *CRITEO_CAT]
    assert df["label"].to_list() == [1, 0, 0, 0]
    assert df["row_id"].to_list() == [0, 1, 2, 3]
    assert df["I1"].to_list() == [1.0, 2.0, 2.0, None]
    assert df["C1"][0] == int("68fd1e64", 16)
    assert df["C20"][2] is None and df["C26"][3] is None


def test_criteo_validates_and_preprocesses(criteo_file: Path) -> None:
    schema = criteo_schema(min_count=2)
    s = validate_file(criteo_file, schema)
    assert s.rows == 4 and s.positives == 1 and s.dense_missing["I1"] == 1
    pre = Preprocessor.fit(criteo_file, schema)
    batch, targets = load_split(criteo_file, pre)
    assert batch.dense.shape[0] == 4 and np.isfinite(batch.dense).all()
    # C1 = 68fd1e64 appears 3 times -> in vocabulary; 287e684f once -> out of vocabulary
    assert batch.ids[:, 0].tolist() == [2, 2, 1, 2]
    assert (targets.request_id == -1).all()


def test_iter_frames_criteo_chunks(criteo_file: Path) -> None:
    sizes = [len(f) for f in iter_frames(criteo_file, batch_rows=3)]
    assert sizes == [3, 1]


def test_unknown_extension(tmp_path: Path) -> None:
    p = tmp_path / "data.bin"
    p.write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_frame(p)


def test_iter_frames_streams_csv_in_one_pass(tmp_path: Path) -> None:
    import polars as pl

    p = tmp_path / "f.csv"
    pl.DataFrame({"a": np.arange(1000), "b": np.arange(1000) * 0.5}).write_csv(p)
    frames = list(iter_frames(p, batch_rows=300))
    assert [len(f) for f in frames] == [300, 300, 300, 100]
    assert pl.concat(frames).equals(read_frame(p))


def test_scan_files_reads_parts_in_order_and_checks_headers(tmp_path: Path) -> None:
    import polars as pl

    from recdistill.data.readers import resolve_source, scan_files

    for i in range(3):
        pl.DataFrame({"a": [i, i]}).write_csv(tmp_path / f"part{i}.csv")
    files = resolve_source(str(tmp_path / "part*.csv"))
    assert scan_files(files).collect().get_column("a").to_list() == [0, 0, 1, 1, 2, 2]
    pl.DataFrame({"b": [9]}).write_csv(tmp_path / "part3.csv")
    with pytest.raises(DataError, match=r"part3.csv: header \['b'\] differs"):
        scan_files(resolve_source(tmp_path))
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="mixes formats"):
        resolve_source(tmp_path)


def test_header_naming_a_column_twice(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    p.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match=r"f.csv: the header names column\(s\) \['a'\] twice"):
        read_frame(p)

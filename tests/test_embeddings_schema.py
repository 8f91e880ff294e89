"""The embeddings CSV contract: what the pipeline writes, the app reads; bad files fail with row and column."""

import json

import pandas as pd
import pytest

from visualizer.embeddings.schema import COLUMNS, load_embeddings, write_embeddings
from visualizer.errors import UserError


def _frame(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({
        "sample_id": [f"teacher-{i}-0" for i in range(n)], "seed": range(n), "class_label": [i % 3 for i in range(n)],
        "class_name": [f"c{i % 3}" for i in range(n)], "model": ["teacher"] * n, "step": [0] * n,
        "sigma": [80.0] * n, "umap_x": [float(i) for i in range(n)], "umap_y": [0.5] * n,
        "image_path": [f"thumbs/{i}.png" for i in range(n)],
    })


SIDECAR = {"models": {"teacher": {"adapter": "edm-imagenet-64", "checkpoint": "x.pkl"}}, "layers": ["enc.8x8_block2"]}


def test_roundtrip(tmp_path):
    path = write_embeddings(_frame(), tmp_path / "embeddings.csv", SIDECAR)
    emb = load_embeddings(path)
    assert list(emb.frame.columns) == list(COLUMNS)
    assert emb.frame["seed"].dtype == "int64" and emb.models["teacher"]["adapter"] == "edm-imagenet-64"
    assert emb.sidecar["schema_version"] == 1 and emb.root == tmp_path
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns=["umap_x"]), "missing column"),
        (lambda f: f.assign(seed=["1", "x", "3", "4"]), "row 3, column 'seed': expected a finite int"),
        (lambda f: f.assign(umap_y=[0.0, 1.0, float("nan"), 2.0]), "row 4, column 'umap_y'"),
        (lambda f: f.assign(class_label=[0, 1, -2, 0]), "row 4, column 'class_label': must be >= 0"),
        (lambda f: f.assign(step=[0, 0.5, 0, 0]), "row 3, column 'step': expected an integer"),
        (lambda f: f.assign(sample_id=["a", "b", "a", "c"]), "row 4, column 'sample_id': duplicate"),
        (lambda f: f.iloc[:0], "no rows"),
    ],
)
def test_malformed_csv_names_file_row_and_column(tmp_path, edit, message):
    path = tmp_path / "bad.csv"
    edit(_frame()).to_csv(path, index=False)
    with pytest.raises(UserError, match=message) as err:
        load_embeddings(path)
    assert str(path) in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="no such embeddings file"):
        load_embeddings(tmp_path / "nope.csv")
    (tmp_path / "garbage.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UserError, match="garbage.csv"):
        load_embeddings(tmp_path / "garbage.csv")


def test_bad_sidecar(tmp_path):
    path = tmp_path / "e.csv"
    _frame().to_csv(path, index=False)
    (tmp_path / "e.json").write_text("{not json")
    with pytest.raises(UserError, match=r"e.json: not valid JSON \(line 1"):
        load_embeddings(path)
    (tmp_path / "e.json").write_text(json.dumps({"schema_version": 1, "models": {}, "layers": []}))
    with pytest.raises(UserError, match=r"models \['teacher'\] appear in e.csv but not in the sidecar"):
        load_embeddings(path)
    (tmp_path / "e.json").write_text(json.dumps({"schema_version": 1, "layers": []}))
    with pytest.raises(UserError, match="missing key"):
        load_embeddings(path)

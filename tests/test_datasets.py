"""Dataset layouts: flat name_xxx folders, one folder per identity, manifest CSVs, and their bad cases."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from PIL import Image

from faceval.datasets import DatasetError, combine_datasets, identity_from_file_name, load_dataset


def draw(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path, format="PNG")


def test_flat_layout_uses_name_before_first_underscore(tmp_path):
    for name in ["新垣結衣_001.png", "新垣結衣_002.png", "石原さとみ_001_extra.png", "solo.png"]:
        draw(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a face")
    dataset = load_dataset(tmp_path)
    assert dataset.layout == "flat"
    assert [r.identity for r in dataset.records] == ["solo", "新垣結衣", "新垣結衣", "石原さとみ"]
    assert dataset.n_identities == 3
    assert [(p.name, "skipped" in why) for p, why in dataset.skipped] == [("notes.txt", True)]


def test_decomposed_unicode_names_are_one_identity(tmp_path):
    composed = "ガッキー"
    draw(tmp_path / f"{composed}_1.png")
    draw(tmp_path / f"{unicodedata.normalize('NFD', composed)}_2.png")
    assert load_dataset(tmp_path).n_identities == 1
    assert identity_from_file_name(tmp_path / "a_b_c.png") == "a"


def test_folder_layout_and_stray_files(tmp_path):
    draw(tmp_path / "alice" / "1.png")
    draw(tmp_path / "alice" / "session2" / "2.png")
    draw(tmp_path / "bob" / "x.png")
    draw(tmp_path / "stray.png")
    (tmp_path / ".hidden").mkdir()
    draw(tmp_path / ".hidden" / "ignored.png")
    dataset = load_dataset(tmp_path)
    assert dataset.layout == "folders"
    assert [(dataset.relative_path(r), r.identity) for r in dataset.records] == [
        ("alice/1.png", "alice"),
        ("alice/session2/2.png", "alice"),
        ("bob/x.png", "bob"),
    ]
    assert [p.name for p, _ in dataset.skipped] == ["stray.png"]
    assert "--layout flat" in dataset.skipped[0][1]


def test_layout_override(tmp_path):
    draw(tmp_path / "a_1.png")
    draw(tmp_path / "sub" / "b_1.png")
    assert load_dataset(tmp_path, layout="flat").identities == ["a"]


def test_manifest_csv_with_attributes(tmp_path):
    draw(tmp_path / "imgs" / "p1.png")
    draw(tmp_path / "imgs" / "p2.png")
    (tmp_path / "people.csv").write_text(
        "path,identity,gender,group\nimgs/p1.png,Ann,f,A\nimgs/p2.png,Bo,m,B\n", encoding="utf-8"
    )
    dataset = load_dataset(tmp_path / "people.csv")
    assert dataset.layout == "manifest"
    assert dataset.attribute_names == ("gender", "group")
    assert [(r.identity, dict(r.attributes)) for r in dataset.records] == [
        ("Ann", {"gender": "f", "group": "A"}),
        ("Bo", {"gender": "m", "group": "B"}),
    ]
    assert dataset.records[0].path == (tmp_path / "imgs" / "p1.png").resolve()


def test_folder_with_manifest_is_read_through_it(tmp_path):
    draw(tmp_path / "x" / "1.png")
    (tmp_path / "manifest.csv").write_text("path,identity\nx/1.png,someone\n")
    assert load_dataset(tmp_path).identities == ["someone"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,person\na.png,x\n", "missing path, identity"),
        ("path,identity\na.png,\n", "line 2"),
        ("path,identity\na.png,x\na.png,y\n", "listed twice"),
    ],
)
def test_bad_manifests(tmp_path, text, message):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(csv_path)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(tmp_path)
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(DatasetError, match="1 other files were set aside"):
        load_dataset(tmp_path)


def test_combined_datasets_are_groups(tmp_path):
    draw(tmp_path / "general" / "Ann_1.png")
    draw(tmp_path / "young_women" / "Ann_1.png")
    combined = combine_datasets([load_dataset(tmp_path / "general"), load_dataset(tmp_path / "young_women")])
    assert combined.identities == ["general/Ann", "young_women/Ann"]
    assert [r.attributes["group"] for r in combined.records] == ["general", "young_women"]
    assert combined.root == tmp_path.resolve()

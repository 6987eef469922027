"""Dataset layouts: flat name_xxx folders, one folder per identity, manifest CSVs, and their bad cases."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from PIL import Image

from faceval.sources.datasets import DatasetError, combine_datasets, identity_from_file_name, load_dataset


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
    dataset = load_dataset(tmp_path, layout="folders")  # auto refuses: stray.png makes it ambiguous (below)
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


def test_a_flat_folder_with_a_subfolder_of_images_is_refused_until_the_layout_is_chosen(tmp_path):
    for name in ["新垣結衣_001.png", "新垣結衣_002.png", "石原さとみ_001.png"]:
        draw(tmp_path / name)
    draw(tmp_path / "extra" / "x_1.png")
    with pytest.raises(DatasetError) as refused:
        load_dataset(tmp_path)
    message = str(refused.value)
    assert "3 images lie directly in the folder" in message and "1 in subfolders (e.g. extra/x_1.png)" in message
    assert "--layout flat" in message and "--layout folders" in message
    # Either explicit choice reads its images and lists every other one as set aside, with the way back.
    flat = load_dataset(tmp_path, layout="flat")
    assert (flat.layout, flat.n_images, flat.identities) == ("flat", 3, ["新垣結衣", "石原さとみ"])
    assert [(p.relative_to(tmp_path).as_posix(), "--layout folders" in why) for p, why in flat.skipped] == [
        ("extra/x_1.png", True)
    ]
    folders = load_dataset(tmp_path, layout="folders")
    assert (folders.layout, folders.identities) == ("folders", ["extra"])
    assert len(folders.skipped) == 3 and all("--layout flat" in why for _, why in folders.skipped)


def test_a_subfolder_without_images_does_not_change_a_flat_folder(tmp_path):
    draw(tmp_path / "Ann_1.png")
    draw(tmp_path / "Bo_1.png")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("who is who")
    dataset = load_dataset(tmp_path)
    assert (dataset.layout, dataset.identities) == ("flat", ["Ann", "Bo"])
    assert [p.name for p, _ in dataset.skipped] == ["readme.txt"]


def test_linked_identity_folders_are_read_and_a_link_loop_is_followed_once(tmp_path):
    draw(tmp_path / "elsewhere" / "alice_photos" / "1.png")
    draw(tmp_path / "faces" / "bob" / "1.png")
    (tmp_path / "faces" / "alice").symlink_to(tmp_path / "elsewhere" / "alice_photos", target_is_directory=True)
    (tmp_path / "faces" / "bob" / "again").symlink_to(tmp_path / "faces", target_is_directory=True)
    dataset = load_dataset(tmp_path / "faces")
    assert [(dataset.relative_path(r), r.identity) for r in dataset.records] == [
        ("alice/1.png", "alice"),
        ("bob/1.png", "bob"),
    ]


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


def test_a_linked_folder_keeps_the_name_the_user_gave_it(tmp_path):
    draw(tmp_path / "data" / "jaffe" / "KA_1.png")
    draw(tmp_path / "data" / "general" / "Ann_1.png")
    link = tmp_path / "若い女性"
    link.symlink_to(tmp_path / "data" / "jaffe", target_is_directory=True)
    assert load_dataset(link).root.name == "若い女性"
    combined = combine_datasets([load_dataset(tmp_path / "data" / "general"), load_dataset(link)])
    assert combined.identities == ["general/Ann", "若い女性/KA"]
    assert sorted(r.attributes["group"] for r in combined.records) == ["general", "若い女性"]
    # The manifest layout too: the CSV in the linked folder gives the group its link's name.
    (tmp_path / "data" / "jaffe" / "manifest.csv").write_text("path,identity\nKA_1.png,KA\n")
    assert combine_datasets([load_dataset(tmp_path / "data" / "general"), load_dataset(link)]).identities == [
        "general/Ann",
        "若い女性/KA",
    ]


def test_group_names_are_composed_unicode_like_identities(tmp_path):
    decomposed = unicodedata.normalize("NFD", "ガッキー")
    draw(tmp_path / decomposed / "Ann_1.png")
    draw(tmp_path / "others" / "Bo_1.png")
    combined = combine_datasets([load_dataset(tmp_path / decomposed), load_dataset(tmp_path / "others")])
    assert {r.attributes["group"] for r in combined.records} == {"ガッキー", "others"}
    assert "ガッキー/Ann" in combined.identities


def test_one_folder_given_twice_through_a_link_is_refused(tmp_path):
    draw(tmp_path / "jaffe" / "KA_1.png")
    (tmp_path / "若い女性").symlink_to(tmp_path / "jaffe", target_is_directory=True)
    with pytest.raises(DatasetError, match="belongs to two sources, jaffe and 若い女性"):
        combine_datasets([load_dataset(tmp_path / "jaffe"), load_dataset(tmp_path / "若い女性")])

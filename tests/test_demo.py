"""The demo dataset: checksum-verified downloads, local copies recognised by content, clear offline errors."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import pytest

from faceval import demo
from faceval.datasets import load_dataset
from faceval.hashing import sha256_file

from shared_data import shared_file


def test_checksum_list_covers_the_att_faces():
    files = demo.demo_files()
    assert len(files) == 400 and len({item.identity for item in files}) == 40
    assert len({item.sha256 for item in files}) == 400


def test_a_renamed_local_copy_is_recognised_by_checksum(tmp_path):
    source = shared_file("faces/att_orl")  # renamed copies: s01/s01_01.pgm instead of att_faces/s1/1.pgm
    folder = demo.prepare_demo_data(source, progress=False)
    assert folder == demo.demo_dir() / "att_faces"
    dataset = load_dataset(folder)
    assert dataset.n_images == 400 and dataset.n_identities == 40
    first = demo.demo_files()[0]
    assert sha256_file(demo.demo_dir() / first.source_path) == first.sha256


def test_an_incomplete_local_copy_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "demo_dir", lambda: tmp_path / "cache")
    (tmp_path / "partial").mkdir()
    with pytest.raises(demo.DemoDataError, match="400 of the 400 AT&T demo images are not there"):
        demo.prepare_demo_data(tmp_path / "partial", progress=False)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_verifies_every_file(tmp_path, monkeypatch, server):
    root, url = server
    wanted = demo.demo_files()[:3]
    for item in wanted:
        target = root / item.source_path
        target.parent.mkdir(parents=True, exist_ok=True)
        identity, number = item.source_path.split("/")[1:]
        shutil.copyfile(shared_file(f"faces/att_orl/s{int(identity[1:]):02d}/s{int(identity[1:]):02d}_"
                                    f"{int(number.split('.')[0]):02d}.pgm"), target)  # fmt: skip
    monkeypatch.setattr(demo, "SOURCE", url)
    monkeypatch.setattr(demo, "demo_files", lambda: wanted)
    monkeypatch.setattr(demo, "demo_dir", lambda: tmp_path / "cache")
    folder = demo.prepare_demo_data(progress=False)
    assert sorted(p.name for p in folder.rglob("*.pgm")) == ["1.pgm", "2.pgm", "3.pgm"]

    (root / wanted[0].source_path).write_bytes(b"tampered")
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(demo.DemoDataError, match="could not download 1 of the 3") as caught:
        demo.prepare_demo_data(progress=False)
    assert "--data PATH" in str(caught.value)
    assert not (tmp_path / "cache" / wanted[0].source_path).exists()

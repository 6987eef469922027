"""The demo dataset: checksum-verified downloads, local copies recognised by content, clear offline errors."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import threading

import pytest

from faceval import demo
from faceval.sources.datasets import load_dataset
from faceval.sources.hashing import sha256_file

from shared_data import shared_file


def shared_copy_of(item: demo.DemoFile):
    """The shared, renamed copy of a demo file: att_faces/s3/7.pgm is faces/att_orl/s03/s03_07.pgm."""
    identity, number = item.source_path.split("/")[1:]
    person = f"s{int(identity[1:]):02d}"
    return shared_file(f"faces/att_orl/{person}/{person}_{int(number.split('.')[0]):02d}.pgm")


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
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_every_file(tmp_path, monkeypatch, server):
    root, url = server
    wanted = demo.demo_files()[:3]
    for item in wanted:
        target = root / item.source_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_copy_of(item), target)
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


def test_offline_the_demo_stops_at_the_first_name_resolution_failure(tmp_path, monkeypatch):
    lookups = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "faces.invalid":
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(demo, "SOURCE", "http://faces.invalid/att")
    first_forty = demo.demo_files()[:40]
    monkeypatch.setattr(demo, "demo_files", lambda: first_forty)
    monkeypatch.setattr(demo, "demo_dir", lambda: tmp_path / "cache")
    with pytest.raises(demo.DemoDataError, match="offline: the demo images' host name could not be resolved") as caught:
        demo.prepare_demo_data(progress=False)
    assert lookups == ["faces.invalid"]  # one try, not one per file
    assert "--data PATH" in str(caught.value) and "Name or service not known" in str(caught.value)


def test_an_interrupted_local_copy_is_never_taken_for_a_demo_file(tmp_path, monkeypatch):
    wanted = demo.demo_files()[:2]
    local = tmp_path / "local"
    local.mkdir()
    for number, item in enumerate(wanted):
        shutil.copyfile(shared_copy_of(item), local / f"{number}.pgm")
    monkeypatch.setattr(demo, "demo_files", lambda: wanted)
    monkeypatch.setattr(demo, "demo_dir", lambda: tmp_path / "cache")
    cached = tmp_path / "cache" / wanted[0].source_path

    def interrupted(*args):
        raise KeyboardInterrupt  # the process stops just before a copy is complete

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            demo.prepare_demo_data(local, progress=False)
    assert not cached.exists() and list(cached.parent.iterdir()) == []  # no final file, no temporary one

    # A damaged file already at the final path (an older faceval copied straight there) is replaced, not trusted.
    cached.write_bytes(b"half a face")
    folder = demo.prepare_demo_data(local, progress=False)
    assert sha256_file(folder.parent / wanted[0].source_path) == wanted[0].sha256

"""Model files: the registry, the lookup order, and the checksum-verified download (against a local server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import face_recognition_models
import pytest

from faceval import model_files
from faceval.model_files import ModelError, ModelFile, list_models, locate_model

PAYLOAD = b"not really a model, but bytes with a known checksum\n" * 1000
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated_folders(monkeypatch, tmp_path) -> None:
    """Every test gets an empty models folder and user cache, and may go online (to 127.0.0.1 only)."""
    monkeypatch.setenv("FACEVAL_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEVAL_OFFLINE", raising=False)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server over a folder holding ``model.onnx`` (PAYLOAD); yields its base URL and requests."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.onnx").write_bytes(PAYLOAD)
    requests: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def register(monkeypatch, url: str | None, sha256: str | None = PAYLOAD_SHA256) -> ModelFile:
    entry = ModelFile(
        name="test-model",
        filename="test_model.onnx",
        description="a test entry",
        sha256=sha256,
        licence="CC0",
        source="https://example.invalid/test-model",
        how_to_get="test how-to",
        url=url,
    )
    monkeypatch.setitem(model_files.REGISTRY, entry.name, entry)
    return entry


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.onnx"


def test_registry_checksums_of_dlib_files_match_the_installed_package():
    for name, attr in [
        ("dlib-resnet", "face_recognition_model_location"),
        ("dlib-landmarks-5", "pose_predictor_five_point_model_location"),
        ("dlib-cnn-detector", "cnn_face_detector_model_location"),
    ]:
        installed = Path(getattr(face_recognition_models, attr)())
        assert hashlib.sha256(installed.read_bytes()).hexdigest() == model_files.REGISTRY[name].sha256
        assert locate_model(name) == installed


def test_registry_entries_are_complete():
    for entry in model_files.REGISTRY.values():
        assert entry.licence and entry.source.startswith("https://") and entry.how_to_get
        assert entry.url is None or (entry.sha256 is not None and "/raw/" in entry.url)
    assert model_files.REGISTRY["japanese-face"].sha256 is None
    assert model_files.REGISTRY["sface"].sha256.startswith("0ba9fbfa")


def test_download_verifies_then_keeps_the_file(monkeypatch, server, tmp_path):
    base, requests = server
    register(monkeypatch, f"{base}/model.onnx")
    path = locate_model("test-model")
    assert path == tmp_path / "cache" / "faceval" / "models" / "test_model.onnx"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_model.onnx"]  # no temporary file left
    assert locate_model("test-model") == path
    assert requests == ["/model.onnx"]  # the second lookup found the cached file


def test_checksum_mismatch_raises_and_keeps_nothing(monkeypatch, server, tmp_path):
    base, _ = server
    register(monkeypatch, f"{base}/model.onnx", sha256="f" * 64)
    with pytest.raises(ModelError, match=f"'test-model'.*sha256 {PAYLOAD_SHA256}, expected f{{64}}"):
        locate_model("test-model")
    cache = tmp_path / "cache" / "faceval" / "models"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_offline_error_says_where_to_put_the_file(monkeypatch, tmp_path):
    register(monkeypatch, closed_port_url())
    with pytest.raises(ModelError) as raised:
        locate_model("test-model")
    message = str(raised.value)
    assert "could not be downloaded" in message and "test_model.onnx" in message
    assert str(tmp_path / "models") in message and str(tmp_path / "cache" / "faceval" / "models") in message
    assert "FACEVAL_MODELS_DIR" in message and "CC0" in message


def test_faceval_offline_never_tries_the_network(monkeypatch, server):
    base, requests = server
    register(monkeypatch, f"{base}/model.onnx")
    monkeypatch.setenv("FACEVAL_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"not found; put test_model\.onnx into"):
        locate_model("test-model")
    assert requests == []


def test_lookup_order_explicit_then_models_dir_then_cache(monkeypatch, tmp_path):
    register(monkeypatch, None)
    cached = tmp_path / "cache" / "faceval" / "models" / "test_model.onnx"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    assert locate_model("test-model") == cached
    # A per-model subfolder of FACEVAL_MODELS_DIR (the layout of opencv_zoo and ../shared/models) wins.
    in_models_dir = tmp_path / "models" / "test" / "test_model.onnx"
    in_models_dir.parent.mkdir(parents=True)
    in_models_dir.write_bytes(PAYLOAD)
    assert locate_model("test-model") == in_models_dir
    explicit = tmp_path / "elsewhere.onnx"
    explicit.write_bytes(b"anything")
    assert locate_model("test-model", explicit) == explicit
    with pytest.raises(ModelError, match="file not found"):
        locate_model("test-model", tmp_path / "missing.onnx")


def test_a_corrupt_local_copy_is_refused(monkeypatch, tmp_path):
    register(monkeypatch, None)
    corrupt = tmp_path / "models" / "test_model.onnx"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ModelError, match="corrupt or a different version"):
        locate_model("test-model")


def test_proprietary_and_unknown_models():
    with pytest.raises(ModelError, match=r"JAPANESE_FACE_v1\.onnx.*proprietary"):
        locate_model("japanese-face")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        locate_model("nope")


def test_list_models_reports_each_file(tmp_path):
    (tmp_path / "models").mkdir()
    # The seed's own name for the JAPANESE FACE file is recognised too.
    (tmp_path / "models" / "efficientnetv2_arcface.onnx").write_bytes(b"x")
    rows = {row["name"]: row for row in list_models()}
    assert set(rows) == set(model_files.REGISTRY)
    assert rows["japanese-face"]["found_at"] == str(tmp_path / "models" / "efficientnetv2_arcface.onnx")
    assert rows["dlib-resnet"]["found_at"] == face_recognition_models.face_recognition_model_location()
    assert rows["sface"]["found_at"] is None and "opencv_zoo" in rows["sface"]["how_to_get"]
    assert {"sha256", "licence", "source", "file"} <= set(rows["sface"])

"""Model files: the registry, the lookup order, and the checksum-verified download (against a local server)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import face_recognition_models
import pytest

from faceval.models import model_files
from faceval.models.model_files import DownloadError, ModelError, ModelFile, download_file, list_models, locate_model

PAYLOAD = b"not really a model, but bytes with a known checksum\n" * 1000
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
# What a Git LFS repository serves in place of the file when its LFS objects are not available.
LFS_POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{PAYLOAD_SHA256}\nsize {len(PAYLOAD)}\n".encode()


@pytest.fixture(autouse=True)
def isolated_folders(monkeypatch, tmp_path) -> None:
    """Every test gets an empty models folder and user cache, and may go online (to 127.0.0.1 only)."""
    monkeypatch.setenv("FACEVAL_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEVAL_OFFLINE", raising=False)


@dataclass
class Server:
    """A loopback HTTP server: ``files`` maps a path to its bytes; a path in ``cut`` sends half of them, then
    closes the connection (a download dropped mid-way), announced with a Content-Length or as one chunk of a
    chunked transfer; every request's path is recorded in ``requests``."""

    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """A `Server` holding ``/model.onnx`` (PAYLOAD), stopped when the test ends."""
    state = Server(base="", files={"/model.onnx": PAYLOAD})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            chunked = state.cut.get(self.path) == "chunked"
            self.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))))
            self.end_headers()
            if chunked:
                self.wfile.write(b"%x\r\n" % len(body))
            self.wfile.write(body[: len(body) // 2] if self.path in state.cut else body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def register(monkeypatch, *urls: str, sha256: str | None = PAYLOAD_SHA256) -> ModelFile:
    entry = ModelFile(
        name="test-model",
        filename="test_model.onnx",
        description="a test entry",
        sha256=sha256,
        licence="CC0",
        source="https://example.invalid/test-model",
        how_to_get="test how-to",
        urls=urls,
    )
    monkeypatch.setitem(model_files.REGISTRY, entry.name, entry)
    return entry


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.onnx"


def unresolvable_hosts(monkeypatch, *hosts: str) -> list[str]:
    """Make the given host names fail to resolve, as they do offline; returns the list of lookups tried."""
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in hosts:
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def cached_files(tmp_path) -> list[str]:
    cache = tmp_path / "cache" / "faceval" / "models"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


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
        assert not entry.urls or entry.sha256 is not None
        assert all(url.startswith("https://") and url.endswith(f"/{entry.filename}") for url in entry.urls)
    assert model_files.REGISTRY["japanese-face"].sha256 is None
    assert model_files.REGISTRY["sface"].sha256.startswith("0ba9fbfa")
    # opencv_zoo's Git LFS ran out of bandwidth: its models' home on Hugging Face comes first, GitHub after it.
    for name, repository in [("sface", "face_recognition_sface"), ("yunet", "face_detection_yunet")]:
        first, fallback = model_files.REGISTRY[name].urls
        assert first.startswith(f"https://huggingface.co/opencv/{repository}/resolve/")
        assert fallback.startswith("https://github.com/opencv/opencv_zoo/raw/")


def test_download_verifies_then_keeps_the_file(monkeypatch, server, tmp_path):
    register(monkeypatch, f"{server.base}/model.onnx")
    path = locate_model("test-model")
    assert path == tmp_path / "cache" / "faceval" / "models" / "test_model.onnx"
    assert path.read_bytes() == PAYLOAD
    assert cached_files(tmp_path) == ["test_model.onnx"]  # no temporary file left
    assert locate_model("test-model") == path
    assert server.requests == ["/model.onnx"]  # the second lookup found the cached file


def test_checksum_mismatch_raises_and_keeps_nothing(monkeypatch, server, tmp_path):
    register(monkeypatch, f"{server.base}/model.onnx", sha256="f" * 64)
    with pytest.raises(ModelError) as raised:
        locate_model("test-model")
    message = str(raised.value)
    assert "'test-model'" in message and "f" * 64 in message and PAYLOAD_SHA256 in message
    assert cached_files(tmp_path) == []


def test_the_first_source_that_serves_the_file_is_used(monkeypatch, server, tmp_path):
    server.files["/zoo/model.onnx"] = PAYLOAD
    server.files["/wrong/model.onnx"] = b"other bytes"
    register(
        monkeypatch, f"{server.base}/hub/model.onnx", f"{server.base}/wrong/model.onnx", f"{server.base}/zoo/model.onnx"
    )
    assert locate_model("test-model").read_bytes() == PAYLOAD
    assert server.requests == ["/hub/model.onnx", "/wrong/model.onnx", "/zoo/model.onnx"]  # in order, until one serves
    assert cached_files(tmp_path) == ["test_model.onnx"]


def test_a_git_lfs_pointer_is_named_for_what_it_is(monkeypatch, server, tmp_path):
    server.files["/zoo/model.onnx"] = LFS_POINTER
    register(monkeypatch, f"{server.base}/zoo/model.onnx")
    with pytest.raises(ModelError, match=r"zoo/model\.onnx served a Git LFS pointer, not the file"):
        locate_model("test-model")
    assert cached_files(tmp_path) == []
    # A pointer already on disk (a clone made without git-lfs) is named too, not just called corrupt.
    pointer = tmp_path / "models" / "test_model.onnx"
    pointer.parent.mkdir(parents=True)
    pointer.write_bytes(LFS_POINTER)
    with pytest.raises(ModelError, match=r"is a Git LFS pointer .* 'git lfs pull'"):
        locate_model("test-model")


@pytest.mark.parametrize("transfer", ["length", "chunked"])
def test_a_dropped_connection_is_a_clear_error_and_the_next_source_is_tried(monkeypatch, server, tmp_path, transfer):
    server.files["/cut/model.onnx"] = PAYLOAD
    server.cut["/cut/model.onnx"] = transfer
    register(monkeypatch, f"{server.base}/cut/model.onnx")
    with pytest.raises(ModelError, match=r"cut/model\.onnx: the connection dropped mid-download"):
        locate_model("test-model")
    assert cached_files(tmp_path) == []
    register(monkeypatch, f"{server.base}/cut/model.onnx", f"{server.base}/model.onnx")
    assert locate_model("test-model").read_bytes() == PAYLOAD
    assert server.requests[-2:] == ["/cut/model.onnx", "/model.onnx"]


def test_an_unresolvable_host_is_reported_as_no_network(monkeypatch, server, tmp_path):
    lookups = unresolvable_hosts(monkeypatch, "hub.invalid", "zoo.invalid")
    urls = ["http://hub.invalid/model.onnx", "http://zoo.invalid/model.onnx"]
    with pytest.raises(DownloadError, match="no network") as raised:
        download_file(urls, tmp_path / "out" / "model.onnx", PAYLOAD_SHA256, name="test")
    assert raised.value.offline and lookups == ["hub.invalid", "zoo.invalid"]
    assert "host name not resolved" in str(raised.value)
    # One source unreachable by name but another answering is not "offline".
    with pytest.raises(DownloadError) as raised:
        download_file(
            [urls[0], f"{server.base}/missing.onnx"], tmp_path / "out" / "model.onnx", PAYLOAD_SHA256, name="t"
        )
    assert not raised.value.offline and "404" in str(raised.value)


def test_offline_error_says_where_to_put_the_file(monkeypatch, tmp_path):
    register(monkeypatch, closed_port_url())
    with pytest.raises(ModelError) as raised:
        locate_model("test-model")
    message = str(raised.value)
    assert "could not be downloaded" in message and "test_model.onnx" in message
    assert str(tmp_path / "models") in message and str(tmp_path / "cache" / "faceval" / "models") in message
    assert "FACEVAL_MODELS_DIR" in message and "CC0" in message


def test_faceval_offline_never_tries_the_network(monkeypatch, server):
    register(monkeypatch, f"{server.base}/model.onnx")
    monkeypatch.setenv("FACEVAL_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"not found; put test_model\.onnx into"):
        locate_model("test-model")
    assert server.requests == []


def test_lookup_order_explicit_then_models_dir_then_cache(monkeypatch, tmp_path):
    register(monkeypatch)
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
    register(monkeypatch)
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
    assert rows["sface"]["found_at"] is None and "Hugging Face" in rows["sface"]["how_to_get"]
    assert {"sha256", "licence", "source", "file"} <= set(rows["sface"])

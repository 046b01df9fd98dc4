"""`hfcompress push` for real over HTTP: huggingface_hub against a local Hub stand-in (tests/hub_server.py)."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import THREADS, snapshot, tiny_classifier
from hub_server import FakeHub

TOKEN = "hf_secretXYZ0123456789abcdef"


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory, tokenizer):
    """An hfcompress output folder: safetensors weights, config, tokenizer, compression.json, card and chart."""
    from hfcompress.cards import write_model_card

    path = tmp_path_factory.mktemp("push") / "tiny-student"
    model = tiny_classifier("bert", layers=2, vocab_size=1000)
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    size = (path / "model.safetensors").stat().st_size
    entry = {"metrics": {"accuracy": 0.875}, "score": 0.875, "latency_ms": {"batch_1": 2.5, "batch_32": 30.0}}
    report = {
        "created": "2026-11-23T12:00:00+00:00", "task": "sst2",
        "command": f"hfcompress distill google-bert/bert-base-uncased --task sst2 --output-dir {path}",
        "source": {"label": "teacher", "model": "google-bert/bert-base-uncased", "parameters": 109483778,
                   "size_bytes": 437958648, **entry, "latency_ms": {"batch_1": 40.0, "batch_32": 1200.0}},
        "result": {"label": "student", "model": str(path), "parameters": model.num_parameters(), "size_bytes": size,
                   **entry},
        "ratios": {"score": 1.0}, "latency_setup": {"device": "cpu", "seq_len": 128, "threads": 2, "statistic": "x"},
        "steps": [{"method": "distillation", "teacher": "google-bert/bert-base-uncased", "student": "layers 0,11",
                   "settings": {"temperature": 2.0}, "parameters": model.num_parameters(), "size_bytes": size}],
        "versions": {"python": "3.11.7", "hfcompress": "0.1.0"},
    }  # fmt: skip
    (path / "compression.json").write_text(json.dumps(report, indent=2))
    write_model_card(path)
    return path


@pytest.fixture
def folder(output_dir, tmp_path):
    """A private copy per test, so one test's push cannot change what another sees."""
    return shutil.copytree(output_dir, tmp_path / output_dir.name)


@pytest.fixture
def hub():
    with FakeHub(token=TOKEN, user="alice", orgs=("acme",), lifetime=120) as server:
        yield server


def push(folder, *args, endpoint=None, token=TOKEN, **env):
    """`python -m hfcompress push` in a fresh interpreter: HF_ENDPOINT is read when huggingface_hub is imported."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    environ.update(HF_HOME=str(folder.parent / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", **env)
    if endpoint:
        environ["HF_ENDPOINT"] = endpoint
    if token:
        environ["HF_TOKEN"] = token
    command = [sys.executable, "-m", "hfcompress", "push", str(folder), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=environ, cwd=folder.parent, timeout=120)


def assert_token_nowhere(result, *folders):
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
    for folder in folders:
        for path in folder.rglob("*"):
            assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def assert_one_sentence_error(result):
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("hfcompress push: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return errors[0]


def test_push_uploads_every_file_byte_for_byte(folder, hub):
    result = push(folder, "--repo-id", "alice/tiny-student", "--private", endpoint=hub.url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Pushed {folder} to {hub.url}/alice/tiny-student" in result.stdout
    assert hub.files("alice/tiny-student") == snapshot(folder)  # the card, chart, weights, tokenizer, report
    assert {"README.md", "compression_chart.png", "model.safetensors", "compression.json"} <= set(snapshot(folder))
    assert hub.repos["alice/tiny-student"].private is True
    assert f"Bearer {TOKEN}" in hub.authorizations and not hub.unknown
    card = (folder / "README.md").read_text()
    assert 'model_id = "alice/tiny-student"' in card  # the snippet now loads from the Hub
    assert_token_nowhere(result, folder)
    received = b"".join(hub.files("alice/tiny-student").values())
    assert TOKEN.encode() not in received

    commits = len(hub.repos["alice/tiny-student"].commits)  # pushing the same folder again changes nothing
    again = push(folder, "--repo-id", "alice/tiny-student", endpoint=hub.url)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(hub.repos["alice/tiny-student"].commits) == commits


def test_push_to_a_branch_and_as_a_pull_request(folder, hub):
    result = push(folder, "--repo-id", "acme/tiny", "--revision", "dev", "--commit-message", "first", endpoint=hub.url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"{hub.url}/acme/tiny/tree/dev")
    repo = hub.repos["acme/tiny"]
    assert repo.branches["main"] == {} and repo.branches["dev"] == snapshot(folder)
    assert repo.private is False and repo.commits[-1]["summary"] == "first"

    result = push(folder, "--repo-id", "acme/tiny", "--create-pr", endpoint=hub.url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/acme/tiny/discussions/1" in result.stdout
    assert repo.branches["refs/pr/1"] == snapshot(folder) and repo.branches["main"] == {}

    result = push(folder, "--repo-id", "acme/tiny", "--create-pr", "--revision", "dev", endpoint=hub.url)
    assert "either --create-pr or --revision" in assert_one_sentence_error(result)


def test_push_through_lfs(folder):
    """Weights go through the LFS batch / upload / verify protocol when the Hub asks for it (hf_xet disabled)."""
    with FakeHub(token=TOKEN, lfs=True) as hub:
        result = push(folder, "--repo-id", "tiny", endpoint=hub.url, HF_HUB_DISABLE_XET="1")
        assert result.returncode == 0, result.stderr[-3000:]
        weights = (folder / "model.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() in hub.blobs
        assert hub.files("alice/tiny") == snapshot(folder)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


CASES = {
    "no token": (dict(token=None), "No Hugging Face token found"),
    "bad token": (dict(token="hf_wrongtoken0000000000000"), "rejected the token (401 Unauthorized)"),
    "foreign namespace": (
        dict(repo="bob/tiny"),
        "not allowed to write to 'bob/tiny' (403 Forbidden): 'bob' is neither",
    ),
    "foreign repo": (dict(repo="bob/public", existing="bob"), "not allowed to write to 'bob/public' (403 Forbidden)"),
    "403": (dict(fail=(403, "preupload")), "not allowed to write to 'alice/tiny' (403 Forbidden); push to"),
    "500": (dict(fail=(500, "create_repo")), "answered 500 (a server error)"),
    "too large": (dict(max_file_size=50_000), "too large"),
    "connection refused": (dict(endpoint="closed"), "Could not reach the Hub at http://127.0.0.1:"),
    "offline": (dict(env={"HF_HUB_OFFLINE": "1"}), "HF_HUB_OFFLINE is set"),
    "private but public": (dict(existing="alice", private=True), "already exists and is public"),
    "token in a file": (dict(leak=True), "'notes.txt' holds your Hugging Face token"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_push_failures_are_one_sentence_and_change_nothing(case, folder):
    options, message = CASES[case]
    repo = options.get("repo", "alice/tiny")
    if options.get("leak"):
        (folder / "notes.txt").write_text(f"export HF_TOKEN={TOKEN}\n")
    before = snapshot(folder)
    with FakeHub(token=TOKEN, orgs=("acme",), max_file_size=options.get("max_file_size")) as hub:
        if options.get("existing"):
            hub.add_repo(repo, owner=options["existing"], files={"README.md": b"theirs"})
        if options.get("fail"):
            hub.fail(*options["fail"])
        endpoint = closed_port_url() if options.get("endpoint") == "closed" else hub.url
        args = ["--repo-id", repo, *(["--private"] if options.get("private") else [])]
        result = push(folder, *args, endpoint=endpoint, token=options.get("token", TOKEN), **options.get("env", {}))
        error = assert_one_sentence_error(result)
        assert message in error, error
        assert snapshot(folder) == before  # the card refreshed for the repo id was put back
        if not options.get("leak"):
            assert_token_nowhere(result, folder)
        assert TOKEN not in result.stdout + result.stderr
        if repo in hub.repos and options.get("existing"):
            assert hub.files(repo) == {"README.md": b"theirs"}
        if case == "500":  # once the Hub is back, the same command completes the push
            hub.fail(None)
            result = push(folder, *args, endpoint=endpoint)
            assert result.returncode == 0, result.stderr[-3000:]
            assert hub.files(repo) == snapshot(folder)


def test_push_usage_errors(tmp_path):
    result = push(tmp_path / "missing", "--repo-id", "alice/x", endpoint="http://127.0.0.1:9")
    assert "is not a directory" in assert_one_sentence_error(result)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    result = push(tmp_path / "out", "--repo-id", "alice/bad--name", endpoint="http://127.0.0.1:9")
    assert "not a valid Hub repo id" in assert_one_sentence_error(result)
    result = push(tmp_path / "out", endpoint="http://127.0.0.1:9")
    assert "--repo-id is required" in assert_one_sentence_error(result)


def test_python_api_with_an_explicit_token(folder, hub):
    """`check_token` (run before training by --push_to_hub) and `push_folder(token=...)`, with no HF_TOKEN set."""
    code = (
        "import sys\n"
        "from hfcompress.errors import HfcompressError\n"
        "from hfcompress.hub import check_token, push_folder\n"
        f"print(check_token({TOKEN!r}))\n"
        f"print(push_folder({str(folder)!r}, 'tiny-api', token={TOKEN!r}, commit_message='api'))\n"
        "try:\n"
        "    check_token('hf_notavalidtoken00000000')\n"
        "except HfcompressError as err:\n"
        "    print(err)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    environ.update(HF_ENDPOINT=hub.url, HF_HOME=str(folder.parent / "hf-home"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    user, url, error = result.stdout.strip().splitlines()[-3:]
    assert user == "alice" and url == f"{hub.url}/alice/tiny-api"
    assert "rejected the token (401 Unauthorized)" in error and "hf_notavalid" not in error
    assert hub.files("alice/tiny-api") == snapshot(folder)
    assert hub.repos["alice/tiny-api"].commits[-1]["summary"] == "api"


def test_training_command_pushes_its_own_card(tmp_path, hub, tiny_teacher_dir, tiny_glue_dir):
    """`--push_to_hub --hub_model_id` on distill: our card arrives, never the Trainer's, and no token anywhere."""
    out = tmp_path / "pushed"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    environ.update(
        HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, OMP_NUM_THREADS=str(THREADS)
    )
    command = [sys.executable, "-m", "hfcompress", "distill", str(tiny_teacher_dir), "--task", "sst2",
               "--data-dir", str(tiny_glue_dir), "--student-layers", "2", "--max-steps", "2", "--latency-runs", "0",
               "--output-dir", str(out), "--push_to_hub", "--hub_model_id", "alice/pushed-student",
               "--hub_private_repo", "true"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pushed" in result.stdout
    files = hub.files("alice/pushed-student")
    assert files == snapshot(out)
    assert b"hfcompress:generated from compression.json" in files["README.md"]
    assert hub.repos["alice/pushed-student"].private is True
    assert_token_nowhere(result, out)


def test_training_command_checks_the_token_before_training(tmp_path, hub, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "refused"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    environ.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=hub.url, HF_TOKEN="hf_wrong_token_000")
    command = [sys.executable, "-m", "hfcompress", "distill", str(tiny_teacher_dir), "--task", "sst2",
               "--data-dir", str(tiny_glue_dir), "--output-dir", str(out), "--push_to_hub"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300)
    assert result.returncode != 0
    assert "hf_wrong_token_000" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and not out.exists()

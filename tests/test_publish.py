"""`python -m ser_model publish`: the folder it builds, the check it runs before any upload, and the
upload itself with the Hub replaced by a fake (nothing here touches the network)."""

import json
import re
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError

import ser_model.hub.publish as publish
from ser_model.cli import main
from ser_model.hub.export import pip_install_line
from ser_model.cli import BUNDLED_MODEL
from ser_model.hub.publish import PublishError, build_folder, check_card, check_loads, commit_message, folder_files

from .conftest import save_tiny_model

TOKEN = "hf_SECRETTOKEN123"
OID = "a" * 40
EXPECTED_FILES = {"README.md", "config.json", "preprocessor_config.json", "model.safetensors", "configuration.py",
                  "feature_extractor.py", "modeling.py"}


class FakeHub:
    """Stands in for `HfApi`: records every call, answers `whoami` with `identity`, and raises
    `errors[method]` from that method. `upload_folder` keeps the bytes of every file it is given."""

    def __init__(self, identity=None, errors=None):
        self.identity = identity or {"type": "user", "name": "alice", "orgs": [{"name": "alice-lab"}],
                                     "auth": {"accessToken": {"role": "write"}}}
        self.errors = errors or {}
        self.calls = []
        self.uploaded = None

    def _call(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if name in self.errors:
            raise self.errors[name]

    def whoami(self, token=None, **kwargs):
        self._call("whoami", token=token)
        return self.identity

    def create_repo(self, repo_id, **kwargs):
        self._call("create_repo", repo_id=repo_id, **kwargs)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        self.uploaded = {name: (folder / name).read_bytes() for name in folder_files(folder)}
        self._call("upload_folder", **kwargs)
        return type("CommitInfo", (), {"oid": OID})()

    def names(self):
        return [name for name, _ in self.calls]


def http_error(status: int, message: str) -> HfHubHTTPError:
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("trained") / "model")


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(publish, "HfApi", lambda: fake)
    return fake


@pytest.fixture
def logged_in(monkeypatch, tmp_path):
    """HF_TOKEN set to a fake token, and no stored login to fall back on."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture
def unchecked(monkeypatch):
    """Skips the subprocess load check (tested on its own below), recording that it ran."""
    checked = []
    monkeypatch.setattr(publish, "check_loads", lambda folder, **kwargs: checked.append(Path(folder)))
    return checked


def run_cli(capsys, *args):
    status = main(["publish", *map(str, args)])
    out, err = capsys.readouterr()
    assert TOKEN not in out and TOKEN not in err
    return status, out, err


def error_line(err: str) -> str:
    """The one error sentence, with no traceback (progress bars and warnings may precede it)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.slow
def test_dry_run_writes_a_folder_that_loads_and_uploads_nothing(trained, tmp_path, capsys, hub, logged_in):
    folder = tmp_path / "upload"
    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", "alice/ser-tiny", "--revision-note",
                               "first try", "--dry-run", folder)

    assert status == 0, err
    assert hub.calls == []
    files = folder_files(folder)
    assert set(files) == EXPECTED_FILES
    assert re.findall(r"^  (\S+)  \(", out, flags=re.M) == files  # the printed list is exactly the folder
    assert "  Upload speech emotion model (no evaluation report): first try\n" in out
    assert "nothing uploaded" in out
    assert f"  {pip_install_line()}\n" in out
    assert 'model="alice/ser-tiny"' in (folder / "README.md").read_text()
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForAudioClassification"] == "modeling.SERForAudioClassification"


def test_the_shipped_model_card_carries_the_measured_metrics(tmp_path):
    folder = build_folder(BUNDLED_MODEL, tmp_path / "upload", "alice/ser-densenet")
    report = json.loads((BUNDLED_MODEL / "evaluation" / "report.json").read_text())

    assert {"evaluation/report.json", "evaluation/report.md", "evaluation/confusion_matrix.png"} <= set(
        folder_files(folder))
    card = ModelCard.load(folder / "README.md")
    metadata = card.data.to_dict()
    assert metadata["pipeline_tag"] == "audio-classification"
    assert metadata["library_name"] == "transformers"
    assert metadata["license"] == "cc-by-nc-sa-4.0"
    assert 'pipeline("audio-classification", model="alice/ser-densenet", trust_remote_code=True)' in card.text
    assert f"```bash\n{pip_install_line()}\n```" in card.text
    ravdess = report["results"]["fusion"]["ravdess"]
    [entry] = metadata["model-index"]
    carded = {(r["dataset"]["type"], m["type"]): m["value"] for r in entry["results"] for m in r["metrics"]}
    assert carded[("ravdess", "accuracy")] == round(ravdess["accuracy"], 4)
    assert carded[("ravdess", "recall")] == round(ravdess["macro_recall"], 4)
    assert carded[("ravdess", "f1")] == round(ravdess["macro_f1"], 4)

    held_out = report["results"]["fusion"]["speaker-independent"]
    assert commit_message(folder) == (f"Upload speech emotion model (accuracy {held_out['accuracy']:.1%}, "
                                      f"UAR {held_out['macro_recall']:.1%} on held-out speakers)")

    # A card that does not say what to install, or whose figures no longer match the report, is refused.
    readme = folder / "README.md"
    card_text = readme.read_text()
    readme.write_text(card_text.replace(pip_install_line(), "pip install transformers"))
    with pytest.raises(PublishError, match="does not tell users to `pip install numpy=="):
        check_card(folder, "alice/ser-densenet")
    readme.write_text(card_text)
    readme.write_text(readme.read_text().replace(f"value: {round(ravdess['accuracy'], 4)}", "value: 0.99", 1))
    with pytest.raises(PublishError, match="differ from the evaluation report: ravdess accuracy"):
        check_card(folder, "alice/ser-densenet")


def _break_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _break_code(folder: Path) -> None:
    (folder / "modeling.py").write_text("raise ImportError('modeling.py is broken on purpose')\n")


@pytest.mark.slow
@pytest.mark.parametrize("breakage", [_break_weights, _break_code], ids=["no-weights", "broken-modeling"])
def test_a_folder_that_does_not_load_is_never_uploaded(breakage, trained, capsys, monkeypatch, hub, logged_in):
    real_export = publish.export_model

    def export_then_break(model_dir, output_dir, **kwargs):
        folder = real_export(model_dir, output_dir, **kwargs)
        breakage(folder)
        return folder

    monkeypatch.setattr(publish, "export_model", export_then_break)
    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", "alice/ser-tiny")

    assert status == 2
    assert "does not load through the Auto classes and pipeline(trust_remote_code=True) offline" in error_line(err)
    assert hub.names() == ["whoami"]


@pytest.mark.slow
def test_check_loads_says_why_a_folder_fails(trained, tmp_path):
    folder = build_folder(trained, tmp_path / "upload", "alice/ser-tiny")
    _break_code(folder)
    with pytest.raises(PublishError, match="modeling.py is broken on purpose"):
        check_loads(folder)


def test_upload_sends_exactly_the_dry_run_folder_and_prints_the_pin(trained, tmp_path, capsys, hub, logged_in,
                                                                    unchecked):
    dry = tmp_path / "dry"
    status, dry_out, _ = run_cli(capsys, "--model", trained, "--repo-id", "alice-lab/ser", "--dry-run", dry,
                                 "--revision-note", "v2")
    assert status == 0 and hub.calls == []
    message = "Upload speech emotion model (no evaluation report): v2"
    assert f"  {message}\n" in dry_out

    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", "alice-lab/ser", "--private",
                               "--revision-note", "v2")

    assert status == 0, err
    assert hub.names() == ["whoami", "create_repo", "upload_folder"]
    assert len(unchecked) == 2  # checked in the dry run, and again before the upload
    assert hub.calls[0][1] == {"token": TOKEN}
    assert hub.calls[1][1] == {"repo_id": "alice-lab/ser", "repo_type": "model", "private": True, "exist_ok": True,
                               "token": TOKEN}
    upload = hub.calls[2][1]
    assert (upload["repo_id"], upload["commit_message"]) == ("alice-lab/ser", message)
    assert hub.uploaded == {name: (dry / name).read_bytes() for name in folder_files(dry)}
    assert f"commit {OID}" in out
    assert f'pipeline("audio-classification", model="alice-lab/ser", revision="{OID}", trust_remote_code=True)' in out
    assert f"SER_MODEL=alice-lab/ser SER_MODEL_REVISION={OID} python app.py" in out
    assert f"  {pip_install_line()}\n" in out


def test_the_stored_login_is_used_without_hf_token(trained, tmp_path, capsys, monkeypatch, hub, logged_in, unchecked):
    monkeypatch.delenv("HF_TOKEN")
    token_file = tmp_path / "login" / "token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))

    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", "alice/ser")

    assert status == 0, err
    assert hub.calls[0] == ("whoami", {"token": TOKEN})


def test_no_token(trained, capsys, monkeypatch, hub, logged_in):
    monkeypatch.delenv("HF_TOKEN")
    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", "alice/ser")
    assert status == 2
    assert error_line(err) == "error: No Hugging Face token: set HF_TOKEN or run `hf auth login`."
    assert hub.calls == []


FAILURES = {
    "rejected-token": ("whoami", http_error(401, f"Invalid user token {TOKEN}."), "alice/ser",
                       "error: The Hugging Face token was rejected (HTTP 401)"),
    "offline-at-login": ("whoami", httpx2.ConnectError(f"[Errno -3] name resolution failed, Bearer {TOKEN}"),
                         "alice/ser", "error: Could not reach the Hugging Face Hub (ConnectError)"),
    "timeout-during-upload": ("upload_folder", httpx2.ReadTimeout("The read operation timed out"), "alice/ser",
                              "error: Could not reach the Hugging Face Hub (ReadTimeout)"),
    "forbidden-namespace": ("create_repo", http_error(403, "You don't have the rights"), "alice-lab/ser",
                            "error: No write access to alice-lab/ser (HTTP 403): alice cannot write to the "
                            "namespace 'alice-lab'"),
    "foreign-namespace": (None, None, "someone-else/ser",
                          "error: No write access to someone-else/ser: the token belongs to alice, and "
                          "'someone-else' is neither alice nor one of their organisations"),
    "other-hub-error": ("upload_folder", http_error(500, f"Internal error for token {TOKEN}"), "alice/ser",
                        "error: The Hugging Face Hub refused the request for alice/ser (HTTP 500): "
                        "Internal error for token hf_***"),
    "unexpected-error": ("upload_folder", RuntimeError(f"xet upload failed with {TOKEN}"), "alice/ser",
                         "error: Publishing alice/ser failed: RuntimeError: xet upload failed with hf_***"),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_failures_are_one_sentence_without_the_token(failure, trained, capsys, hub, logged_in, unchecked):
    method, error, repo_id, sentence = failure
    if method:
        hub.errors[method] = error

    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", repo_id)

    assert status == 2
    assert error_line(err).startswith(sentence)
    assert "upload_folder" not in hub.names() or method == "upload_folder"
    assert f"commit {OID}" not in out


def test_a_read_only_token_is_refused_before_building(trained, capsys, hub, logged_in, unchecked):
    hub.identity["auth"]["accessToken"]["role"] = "read"
    status, out, err = run_cli(capsys, "--model", trained, "--repo-id", "alice/ser")
    assert status == 2
    assert error_line(err).startswith("error: The Hugging Face token of alice is read-only")
    assert hub.names() == ["whoami"] and unchecked == []


@pytest.mark.parametrize("args, sentence", [
    (["--repo-id", "no-namespace"], "error: --repo-id must be ORG/NAME"),
    ([], "error: --repo-id ORG/NAME is required to publish"),
    (["--dry-run", "MODEL"], "error: --dry-run MODEL would replace the model folder"),
    (["--model", "missing-folder", "--dry-run", "out"], "error: No model folder at missing-folder"),
], ids=["repo-id", "no-repo-id", "dry-run-over-model", "no-model"])
def test_bad_arguments(args, sentence, trained, tmp_path, capsys, monkeypatch, hub, logged_in, unchecked):
    monkeypatch.chdir(tmp_path)
    args = [str(trained) if a == "MODEL" else a for a in args]
    sentence = sentence.replace("MODEL", str(trained))
    if "--model" not in args:
        args += ["--model", str(trained)]
    status, out, err = run_cli(capsys, *args)
    assert status == 2
    assert error_line(err).startswith(sentence)
    assert hub.calls == [] and trained.joinpath("model.safetensors").is_file()

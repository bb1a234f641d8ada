"""Publishes a model folder to the Hugging Face Hub, checked before anything leaves the machine.

`python -m ser_model publish --repo-id ORG/NAME` builds the folder `export` builds (weights, config
with `auto_map`, the remote-code files, the model card generated from the evaluation report, the
report and its confusion matrix), loads it the way users will (Auto classes and `pipeline` with
`trust_remote_code=True`, offline, in a fresh process that cannot import this checkout), then creates
the repository if needed, uploads the folder in one commit and prints the commit to pin.
`--dry-run DIR` writes and checks the folder and prints what would be uploaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from huggingface_hub import HfApi, ModelCard, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from . import load_check
from ..errors import InputError
from ..evaluation.report import FUSION, SPEAKER_INDEPENDENT
from .export import CARD_METRICS, PLACEHOLDER_REPO_ID, export_model, pip_install_line
from .load_check import LoadCheck

HUB = "https://huggingface.co"
LOAD_TIMEOUT = 600  # seconds; importing torch + transformers alone takes ~10 s on a busy 2-core machine
# Any variable that would point the check at another cache or leak a credential into it.
_CHILD_ENV_DROP = ("PYTHONPATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE",
                   "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_MODULES_CACHE")


class PublishError(InputError):
    """A publishing failure told to the person publishing in one sentence (the CLI prints it, no traceback)."""


def check_loads(source: str | os.PathLike, revision: str | None = None, hf_home: str | os.PathLike | None = None,
                timeout: float = LOAD_TIMEOUT, python: str | os.PathLike = sys.executable) -> LoadCheck:
    """Runs `load_check.load_and_classify` on `source` (a folder or Hub id) in a fresh Python process with
    `HF_HUB_OFFLINE=1`, from an empty folder and without PYTHONPATH, so that this checkout's `ser_model`
    cannot be imported: the Auto classes and `pipeline("audio-classification")` with `trust_remote_code=True` must
    load it, and its probabilities for one second of synthetic audio must cover the model's labels, sum
    to 1, and agree with the model and feature extractor called directly.

    Args:
        source (`str` or `os.PathLike`): a model folder, or a Hub id resolved from `hf_home`'s cache.
        revision (`str`, *optional*): the Hub revision to load.
        hf_home (`str`, *optional*): `HF_HOME` for the process; defaults to an empty temporary folder.
        timeout (`float`, *optional*, defaults to `LOAD_TIMEOUT`): seconds before giving up.
        python (`str` or `os.PathLike`, *optional*, defaults to this interpreter): the Python to run it
            with, e.g. that of a virtual environment holding only the model card's requirements.

    Raises:
        `PublishError`: the model does not load, uses this checkout's code, or its probabilities are wrong.
    """
    source = str(source)
    what = f"The model {source}" + (f" at revision {revision}" if revision else "")
    with tempfile.TemporaryDirectory(prefix="ser-load-check-") as workdir:
        env = {key: value for key, value in os.environ.items() if key not in _CHILD_ENV_DROP}
        env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home or Path(workdir) / "hf_home"))
        try:
            # By path, with -P: see load_check's docstring for why not `-m ser_model.hub.load_check`.
            done = subprocess.run([str(python), "-P", load_check.__file__, source, revision or ""], cwd=workdir,
                                  env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PublishError(f"{what} did not load within {timeout:.0f} s in a fresh process.") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(load_check.RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise PublishError(f"{what} does not load through the Auto classes and pipeline(trust_remote_code=True) "
                           f"offline: {_last_line(done.stderr) or f'exit status {done.returncode}'}")
    check = LoadCheck(**json.loads(lines[-1][len(load_check.RESULT_PREFIX):]))

    if check.modules or check.model_module.startswith("ser_model"):
        raise PublishError(f"{what} loaded this checkout's ser_model package instead of its own code files.")
    if set(check.scores) != set(check.labels) or len(check.labels) != len(check.scores):
        raise PublishError(f"{what} gave scores for {sorted(check.scores)} instead of its labels {check.labels}.")
    total = sum(check.scores.values())
    if abs(total - 1) > 1e-4:
        raise PublishError(f"{what} gave probabilities that sum to {total:.6f} instead of 1.")
    logits = np.asarray(check.logits)
    direct = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    if not np.allclose([check.scores[label] for label in check.labels], direct, atol=1e-4):
        raise PublishError(f"{what} gives different probabilities through pipeline() than through the model and "
                           f"feature extractor called directly.")
    return check


def _last_line(text: str, limit: int = 400) -> str:
    """The last non-empty line of a traceback (the exception), shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def build_folder(model_dir: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str | None) -> Path:
    """Writes the folder to upload with `export_model` (replacing `output_dir`) and checks its model card."""
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise PublishError(f"No model folder at {model_dir} (a folder with config.json and model.safetensors).")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    export_model(model_dir, output_dir, repo_id=repo_id)
    check_card(output_dir, repo_id)
    return output_dir


def read_report(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / "evaluation" / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None


def check_card(folder: str | os.PathLike, repo_id: str | None) -> dict:
    """Checks that README.md's metadata parses back (as the Hub parses it) with the fields the Hub uses,
    that its model-index holds the measured metrics of the folder's report, and that its usage snippet
    names `repo_id` (the placeholder in a dry run without one). Returns the metadata. (`ModelCard.validate`
    needs the network.)"""
    folder = Path(folder)
    repo_id = repo_id or PLACEHOLDER_REPO_ID
    try:
        card = ModelCard.load(folder / "README.md")
    except (OSError, ValueError) as error:
        raise PublishError(f"The model card {folder / 'README.md'} does not parse: {error}") from None
    metadata = card.data.to_dict()
    expected = {"pipeline_tag": "audio-classification", "library_name": "transformers"}
    for key, value in expected.items():
        if metadata.get(key) != value:
            raise PublishError(f"The model card's {key} must be {value!r}, got {metadata.get(key)!r}.")
    if not metadata.get("license"):
        raise PublishError("The model card has no license.")
    if f'model="{repo_id}"' not in card.text:
        raise PublishError(f"The model card's usage snippet does not name {repo_id}.")
    if pip_install_line() not in card.text:
        raise PublishError(f"The model card does not tell users to `{pip_install_line()}`, what the model's code "
                           f"needs: export the folder again with this checkout.")

    report = read_report(folder)
    if report:
        measured = {(group, metric): round(r[key], 4)
                    for group, r in report["results"][FUSION].items() for metric, _, key in CARD_METRICS}
        carded = {(result.dataset_type, result.metric_type): result.metric_value
                  for result in card.data.eval_results or []}
        if "model-index" not in metadata or not carded:
            raise PublishError("The model card has no model-index although the folder has an evaluation report.")
        wrong = sorted(f"{group} {metric}" for (group, metric), value in carded.items()
                       if measured.get((group, metric)) != value)
        if wrong:
            raise PublishError(f"The model card's metrics differ from the evaluation report: {', '.join(wrong)}.")
    return metadata


def commit_message(folder: str | os.PathLike, note: str | None = None) -> str:
    """"Upload speech emotion model (accuracy X%, UAR Y% on held-out speakers)", from the folder's report."""
    report = read_report(folder)
    result = report and report["results"].get(FUSION, {}).get(SPEAKER_INDEPENDENT)
    if result:
        message = (f"Upload speech emotion model (accuracy {result['accuracy']:.1%}, "
                   f"UAR {result['macro_recall']:.1%} on held-out speakers)")
    else:
        message = "Upload speech emotion model (no evaluation report)"
    return f"{message}: {note.strip()}" if note and note.strip() else message


def folder_files(folder: str | os.PathLike) -> list[str]:
    """The files `upload_folder` sends, as sorted repository paths."""
    folder = Path(folder)
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def prepare(model_dir: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str | None) -> Path:
    """Builds the folder to upload and checks that it loads the way users will load it."""
    folder = build_folder(model_dir, output_dir, repo_id)
    check_loads(folder)
    return folder


def validate_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate

    try:
        hub_validate(repo_id)
    except HFValidationError:
        namespace_ok = False
    else:
        namespace_ok = repo_id.count("/") == 1
    if not namespace_ok:
        raise PublishError(f"--repo-id must be ORG/NAME (your user or organisation name, then the model's name), "
                           f"got {repo_id!r}.")
    return repo_id


def scrub(text: str, token: str | None) -> str:
    """`text` without the token in it, whatever put it there."""
    return text.replace(token, "hf_***") if token else text


@contextlib.contextmanager
def hub_errors(repo_id: str, token: str | None, user: str | None = None) -> Iterator[None]:
    """Turns what the Hub or the network raises into one `PublishError` sentence that never holds the token."""
    try:
        yield
    except PublishError as error:
        raise PublishError(scrub(str(error), token)) from None
    except OfflineModeIsEnabled:
        raise PublishError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it, or use --dry-run DIR.") \
            from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise PublishError("The Hugging Face token was rejected (HTTP 401): create a token with write access at "
                               f"{HUB}/settings/tokens, then set HF_TOKEN or run `hf auth login`.") from None
        if status == 403:
            who = f"{user} " if user else "this token "
            raise PublishError(f"No write access to {repo_id} (HTTP 403): {who}cannot write to the namespace "
                               f"'{repo_id.split('/')[0]}'; publish under your own name or an organisation you can "
                               f"write to, with a write token.") from None
        detail = scrub(_last_line(error.server_message or str(error)), token)
        raise PublishError(f"The Hugging Face Hub refused the request for {repo_id} (HTTP {status}): {detail}") \
            from None
    except Exception as error:  # anything else at the network boundary: one sentence, and never the token
        if _is_network_failure(error):
            raise PublishError(f"Could not reach the Hugging Face Hub ({type(error).__name__}): check the network "
                               f"connection and try again.") from None
        raise PublishError(f"Publishing {repo_id} failed: {type(error).__name__}: "
                           f"{scrub(_last_line(str(error)), token)}") from None


def _is_network_failure(error: Exception) -> bool:
    """Whether `error` says the Hub could not be reached (no connection, a timeout, a dropped link).

    huggingface_hub lets its HTTP library's transport errors through unwrapped, and that library has
    changed (requests, then httpx, now httpx2); the httpx family's errors all derive from a class named
    `TransportError`, so they are recognised by that name instead of by importing a library this
    project never calls itself and would otherwise have to pin beside huggingface_hub's own requirement.
    """
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        cls.__name__ == "TransportError" for cls in type(error).__mro__)


def authenticate(api: HfApi, repo_id: str) -> tuple[str, str]:
    """The token (`HF_TOKEN` or the stored login), checked with `whoami` against `repo_id`'s namespace.
    Returns (token, user name)."""
    token = get_token()
    if not token:
        raise PublishError("No Hugging Face token: set HF_TOKEN or run `hf auth login`.")
    with hub_errors(repo_id, token):
        identity = api.whoami(token=token)
        user = identity.get("name", "")
        namespaces = {user} | {org.get("name") for org in identity.get("orgs", [])}
        namespace = repo_id.split("/")[0]
        if namespace not in namespaces:
            raise PublishError(f"No write access to {repo_id}: the token belongs to {user}, and '{namespace}' is "
                               f"neither {user} nor one of their organisations ({', '.join(sorted(namespaces))}).")
        role = identity.get("auth", {}).get("accessToken", {}).get("role")
        if role == "read":
            raise PublishError(f"The Hugging Face token of {user} is read-only: create one with write access at "
                               f"{HUB}/settings/tokens.")
    return token, user


def upload(api: HfApi, folder: str | os.PathLike, repo_id: str, token: str, user: str, message: str,
           private: bool = False):
    """Creates the model repository if needed and uploads `folder` in one commit; returns the `CommitInfo`."""
    with hub_errors(repo_id, token, user):
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True, token=token)
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                 commit_message=message, token=token)


def add_parser(commands, default_model: str) -> None:
    """The `publish` command; `default_model` is the folder published when `--model` is not given."""
    parser = commands.add_parser("publish", help="check a model folder and upload it to the Hugging Face Hub",
                                 description=__doc__.split("\n\n")[1])
    parser.add_argument("--repo-id", default=None, help="Hub repository ORG/NAME (required unless --dry-run)")
    parser.add_argument("--model", default=default_model, help="model folder (default: %(default)s)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision-note", default=None, help="text added to the commit message")
    parser.add_argument("--dry-run", default=None, metavar="DIR",
                        help="write and check the folder in DIR (replaced) and show what would be uploaded")
    parser.set_defaults(run=_run)


def _run(args) -> int:
    if args.dry_run is None and not args.repo_id:
        raise PublishError("--repo-id ORG/NAME is required to publish (or give --dry-run DIR to only check).")
    repo_id = validate_repo_id(args.repo_id) if args.repo_id else None  # a dry run may leave it out
    if args.dry_run is not None:
        folder = prepare(args.model, _dry_run_folder(Path(args.dry_run), Path(args.model)), repo_id)
        _print_plan(folder, repo_id, commit_message(folder, args.revision_note), args.private)
        return 0

    api = HfApi()
    token, user = authenticate(api, repo_id)
    print(f"Logged in to the Hugging Face Hub as {user}.")
    with tempfile.TemporaryDirectory(prefix="ser-publish-") as tmp:
        folder = prepare(args.model, Path(tmp) / "model", repo_id)
        _warn_without_report(folder)
        message = commit_message(folder, args.revision_note)
        print(f"Checked: the {len(folder_files(folder))} files load offline through the Auto classes and pipeline.")
        commit = upload(api, folder, repo_id, token, user, message, args.private)
    print(f"Uploaded to {HUB}/{repo_id} in commit {commit.oid} ({message}).")
    print("Pin this revision:")
    print(f'  pipeline("audio-classification", model="{repo_id}", revision="{commit.oid}", trust_remote_code=True)')
    print(f"  SER_MODEL={repo_id} SER_MODEL_REVISION={commit.oid} python app.py")
    _print_requirements()
    return 0


def _dry_run_folder(output: Path, model_dir: Path) -> Path:
    """`output`, unless replacing it would delete the model or unrelated files."""
    resolved, model = output.resolve(), model_dir.resolve()
    if resolved == model or resolved in model.parents:
        raise PublishError(f"--dry-run {output} would replace the model folder {model_dir}; give another folder.")
    if resolved.is_dir() and any(resolved.iterdir()) and not (resolved / "config.json").is_file():
        raise PublishError(f"--dry-run {output} holds other files and would be replaced; give a new or empty folder.")
    return output


def _warn_without_report(folder: Path) -> None:
    if read_report(folder) is None:
        print("warning: the model has no evaluation report, so its card carries no metrics", file=sys.stderr)


def _print_plan(folder: Path, repo_id: str | None, message: str, private: bool) -> None:
    files = folder_files(folder)
    _warn_without_report(folder)
    where = f"{HUB}/{repo_id}" if repo_id else "the repository --repo-id names"
    print(f"Checked: {folder} loads offline through AutoModelForAudioClassification, AutoFeatureExtractor and "
          f'pipeline("audio-classification", trust_remote_code=True).')
    print(f"Dry run: nothing uploaded. Would upload to {where} ({'private' if private else 'public'}) "
          f"with the commit message:")
    print(f"  {message}")
    print(f"{len(files)} files:")
    for name in files:
        print(f"  {name}  ({(folder / name).stat().st_size:,} bytes)")
    _print_requirements()


def _print_requirements() -> None:
    print("Users need what the model's code imports (the model card says so too):")
    print(f"  {pip_install_line()}")


__all__ = ["LoadCheck", "PublishError", "authenticate", "build_folder", "check_card", "check_loads", "commit_message",
           "folder_files", "prepare", "upload"]

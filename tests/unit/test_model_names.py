"""Model names are folder names, never paths: one rule (``service.core.names``) wherever a name
becomes a path: ``rtmserve models register``, the repository functions, the model cache, the
request options. (The Triton pipeline's check: tests/e2e/test_model_names.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rtmserve.cli import main as cli_main
from service.app.options import PoseOptions
from service.core.names import InvalidModelName, check_model_name, is_model_name
from service.metadata import RecordCache
from service.models import UnknownModel, cached_model, import_model, pull
from service.repository.candidates import end_trial, start_trial
from service.repository.install import set_serving_version, sync_configs
from service.repository.register import rollback
from service.settings import Settings
from tests.support.synthetic import write_synthetic_pose_onnx

BAD = ["../x", "rtmpose-m\n", "rtmpose-m\r\n", "a/b", "..", ".hidden", "", "x" * 129, "a\x00b"]


@pytest.mark.parametrize("name", ["rtmpose-m", "my_pose.v2", "A", "x" * 128])
def test_plain_names_pass(name: str) -> None:
    assert is_model_name(name) and check_model_name(name) == name
    assert PoseOptions(pose_model=name).pose_model == name


@pytest.mark.parametrize("name", BAD, ids=repr)
def test_paths_and_trailing_newlines_are_refused(name: str) -> None:
    assert not is_model_name(name)
    with pytest.raises(InvalidModelName, match="invalid model name"):
        check_model_name(name)
    with pytest.raises(ValidationError):  # the request options use the same rule
        PoseOptions(pose_model=name)


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("name", ["../x", "rtmpose-m\n"], ids=repr)
def test_register_refuses_a_path_and_writes_nothing(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    onnx = write_synthetic_pose_onnx(tmp_path / "pose.onnx")
    before = _files(tmp_path)
    argv = ["models", "register", name, str(onnx), "--like", "rtmpose-m", "--force",
            "--no-triton", "--home", str(home)]  # fmt: skip
    assert cli_main(argv) == 2
    assert f"invalid model name {name!r}" in capsys.readouterr().err
    assert _files(tmp_path) == before  # nothing written, in the repository or beside it


_OPTIONS = Settings().serving_options
REPOSITORY_CALLS: dict[str, Callable[[Path, str], Any]] = {
    "rollback": lambda repo, name: rollback(repo, name, 1, _OPTIONS, None),
    "set_serving_version": lambda repo, name: set_serving_version(repo, name, 1, _OPTIONS),
    "sync_configs": lambda repo, name: sync_configs(repo, name, _OPTIONS),
    "start_trial": lambda repo, name: start_trial(repo, name, 2, "shadow", 0.1, _OPTIONS, None),
    "end_trial": lambda repo, name: end_trial(repo, name, "dropped", _OPTIONS, None),
}


@pytest.mark.parametrize("call", REPOSITORY_CALLS, ids=str)
def test_repository_functions_refuse_paths(tmp_path: Path, call: str) -> None:
    """Each refuses before reading or writing anything (a path lookup would say the record
    is missing: FileNotFoundError)."""
    repository = tmp_path / "repository"
    repository.mkdir()
    (tmp_path / "x").mkdir()  # what ../x would reach
    with pytest.raises(InvalidModelName):
        REPOSITORY_CALLS[call](repository, "../x")
    assert _files(tmp_path) == {repository, tmp_path / "x"}


def test_records_cache_and_import_refuse_paths(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        RecordCache(tmp_path).get("../x")
    assert cached_model("../x", tmp_path) is None
    with pytest.raises(UnknownModel):
        pull("../x", tmp_path / "cache", allow_download=False)
    onnx = write_synthetic_pose_onnx(tmp_path / "pose.onnx")
    with pytest.raises(InvalidModelName):
        import_model("my-pose\n", onnx, tmp_path / "cache", like="rtmpose-m")
    assert not (tmp_path / "cache").exists()

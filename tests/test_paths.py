"""The default dataset folder: $LABRIG_DATA, else shared/data found upwards, else a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from labrig.paths import DATA_ENV, default_data_dir, find_default_data_dir


def test_shared_data_is_found_from_the_working_directory_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    shared = tmp_path / "shared" / "data" / "fashion-mnist"
    shared.mkdir(parents=True)
    checkout = tmp_path / "wt" / "mine" / "labrig"
    checkout.mkdir(parents=True)
    assert default_data_dir(checkout) == shared
    monkeypatch.chdir(checkout)
    assert default_data_dir() == shared


def test_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    assert find_default_data_dir(tmp_path) == tmp_path / "elsewhere"


def test_nothing_found_says_how_to_name_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    if find_default_data_dir(tmp_path) is not None:
        pytest.skip("a shared/data folder sits above the temporary directory")
    with pytest.raises(FileNotFoundError, match=r"pass --data DIR or set LABRIG_DATA=DIR"):
        default_data_dir(tmp_path)

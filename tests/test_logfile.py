"""The console's rotating log file: where it is, what it keeps, that it rotates and detaches."""

from __future__ import annotations

import logging
from pathlib import Path

from labrig.logfile import LOG_DIR_ENV, SAFETY_LOGGER, FileLog, default_log_dir


def test_keeps_records_at_its_level_and_safety_events_at_any(tmp_path: Path) -> None:
    engine = logging.getLogger("labrig.testlogfile")
    safety = logging.getLogger(SAFETY_LOGGER)
    before = (engine.level, safety.level)
    path = tmp_path / "logs" / "console.log"
    file_log = FileLog(path, ["labrig"], level=logging.INFO)
    try:
        engine.debug("chatter below the threshold")
        engine.info("exposure set to 10 ms")
        safety.debug("laser off, shutter closed")
    finally:
        file_log.close()
    text = path.read_text(encoding="utf-8")
    assert "exposure set to 10 ms" in text
    assert "laser off, shutter closed" in text  # safety: kept below the threshold
    assert "chatter below the threshold" not in text
    # detached: nothing more is written, levels restored
    engine.info("after close")
    assert "after close" not in path.read_text(encoding="utf-8")
    assert (engine.level, safety.level) == before
    assert file_log.handler not in logging.getLogger("labrig").handlers


def test_rotates_instead_of_growing(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    file_log = FileLog(path, ["labrig"], max_bytes=2000, backups=2)
    try:
        for i in range(200):
            logging.getLogger("labrig.testlogfile").warning("record %03d %s", i, "x" * 40)
    finally:
        file_log.close()
    assert path.stat().st_size <= 2000
    assert (tmp_path / "console.log.1").exists() and (tmp_path / "console.log.2").exists()
    assert not (tmp_path / "console.log.3").exists()
    assert "record 199" in path.read_text(encoding="utf-8")


def test_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    try:
        FileLog(blocker / "console.log", ["labrig"])
    except OSError as exc:
        assert "cannot write the log file" in str(exc) and str(blocker) in str(exc)
    else:
        raise AssertionError("a log under a plain file was accepted")


def test_default_folder_is_per_user_or_named(tmp_path: Path) -> None:
    assert default_log_dir({LOG_DIR_ENV: str(tmp_path)}) == tmp_path
    assert str(Path.home()) in str(default_log_dir({}))

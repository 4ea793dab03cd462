"""Start-up warning for secret files readable by group or others."""

from __future__ import annotations

from pathlib import Path

from quantum_exec.ops.secrets_check import check_secret_file_permissions


def test_private_file_passes_and_open_files_warn(tmp_path: Path) -> None:
    private = tmp_path / "private.env"
    private.write_text("BINANCE_API_SECRET=x\n")
    private.chmod(0o600)
    group = tmp_path / "group.env"
    group.write_text("BINANCE_API_SECRET=x\n")
    group.chmod(0o640)
    world = tmp_path / "world.env"
    world.write_text("BINANCE_API_SECRET=x\n")
    world.chmod(0o644)

    assert check_secret_file_permissions([private]) == []
    problems = check_secret_file_permissions([private, group, str(world)])
    assert len(problems) == 2
    assert "group.env" in problems[0] and "accessible by group" in problems[0] and "0640" in problems[0]
    assert "world.env" in problems[1] and "group and others" in problems[1]
    assert "chmod 600" in problems[1]


def test_missing_and_none_are_skipped(tmp_path: Path) -> None:
    assert check_secret_file_permissions([None, tmp_path / "absent.env"]) == []


def test_warning_is_logged(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    world = tmp_path / "world.env"
    world.write_text("x")
    world.chmod(0o604)
    check_secret_file_permissions([world])
    assert [r.getMessage() for r in caplog.records] == ["secrets.file_permissions"]

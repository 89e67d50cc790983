"""Progress reporting (log lines off a terminal) and the ledger's own rules."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from genstack.provision.ledger import ModelLedger, SnapshotFile
from genstack.provision.progress import LogProgress, RichProgress, make_progress


def test_log_progress_writes_periodic_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="genstack.provision")
    progress = LogProgress(interval_s=0.05)
    progress.begin(total_bytes=10_000_000, files=2, already=1_000_000)
    progress.file_started("a.bin", 5_000_000, 0)
    for _ in range(5):
        progress.advance("a.bin", 1_000_000)
        time.sleep(0.03)
    progress.file_done("a.bin")
    progress.file_failed("b.bin", "HTTP 404")
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "provisioning 2 file(s), 9.0 MB to fetch"
    periodic = [line for line in lines if line.startswith("progress ")]
    assert len(periodic) >= 2
    assert periodic[-1].startswith("progress 6.0 MB / 10.0 MB (60%)")
    assert "files 1/2" in periodic[-1]
    assert "verified a.bin" in lines and "failed b.bin: HTTP 404" in lines


def test_auto_progress_is_log_lines_off_a_terminal() -> None:
    assert isinstance(make_progress("auto"), LogProgress)  # pytest captures stderr
    assert isinstance(make_progress("bar"), RichProgress)


def test_ledger_survives_reload_and_detects_changes(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abc")
    ledger = ModelLedger(tmp_path)
    ledger.record("f.bin", "ab" * 32, "hf://o/r/f.bin@main", "hub")
    ledger.set_snapshot("hf://o/r@main|", [SnapshotFile("x.json", 2, None)])

    again = ModelLedger(tmp_path)
    assert again.check("f.bin", "hf://o/r/f.bin@main", None) is not None
    assert again.check("f.bin", "hf://o/r/f.bin@main", "ab" * 32) is not None
    assert again.check("f.bin", "hf://o/r/f.bin@main", "cd" * 32) is None  # pinned elsewhere
    assert again.check("f.bin", "hf://o/r/f.bin@v2", None) is None  # source changed
    assert again.snapshot("hf://o/r@main|") == [SnapshotFile("x.json", 2, None)]
    stat = (tmp_path / "f.bin").stat()
    os.utime(tmp_path / "f.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert again.check("f.bin", "hf://o/r/f.bin@main", None) is None  # touched: re-verify


def test_a_corrupt_ledger_means_hashing_again_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".genstack").mkdir()
    (tmp_path / ".genstack/ledger.json").write_text("{not json")
    ledger = ModelLedger(tmp_path)
    assert ledger.get("anything") is None
    assert "ignoring unreadable ledger" in caplog.text
    (tmp_path / ".genstack/ledger.json").write_text(json.dumps({"version": 99}))
    assert ModelLedger(tmp_path).get("x") is None


def test_rich_progress_draws_bars_and_reports_files() -> None:
    import io

    from rich.console import Console

    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, color_system=None, width=120))
    progress.begin(total_bytes=4_000_000, files=2)
    progress.file_started("diffusion_models/model.safetensors", 3_000_000, 0)
    progress.advance("diffusion_models/model.safetensors", 3_000_000)
    progress.file_state("diffusion_models/model.safetensors", "verified, saving")
    progress.file_done("diffusion_models/model.safetensors")
    progress.file_started("vae/vae.bin", 1_000_000, 0)
    progress.file_failed("vae/vae.bin", "HTTP 404")
    progress.close()
    text = out.getvalue()
    assert "total (2 files)" in text
    assert "verified diffusion_models/model.safetensors" in text
    assert "failed vae/vae.bin: HTTP 404" in text
    assert "3.0/4.0 MB" in text  # the overall bar's byte count

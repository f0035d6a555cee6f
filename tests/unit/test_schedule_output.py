"""``schedule.output.shape`` reads where a job's output reports its own outcome.

Upstream's daily health summary (``backend/app/services/maintenance_jobs_cli.py:302-311``) writes a
well-formed file with ``overall_status: failed`` when its runtime health check or preview reset audit
failed, and the job exits 2 (``:324``). A summary of a failed run must fail the check, even where no
service manager can be asked how the job's unit last exited.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import CheckFailed
from conformance.errors import ConfigError, Undetermined
from conformance.probes.files import NewestFile
from conformance.profile import Timer, load_profile
from conformance.suite import test_schedule as schedule

SHARED = Path(os.environ.get("GATES_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
TARBALL = SHARED / "upstream" / "oroboros-94a5a60.tar.gz"
CLI = "oroboros/backend/app/services/maintenance_jobs_cli.py"
COUNTS = ("total", "completed", "failed", "running", "running_stale", "completed_missing_completed_at",
          "completed_missing_details")  # fmt: skip
PATH = "/srv/oroboros/artifacts/maintenance/daily-health-summary-20260101.json"


def _timer(profile: str = "oroboros", **sets: str) -> Timer:
    return next(t for t in load_profile(profile, sets).timers if t.name == "daily-health-summary")


def summary(overall: object = "passed", *, exit_code: int = 0) -> dict[str, Any]:
    """A daily health summary in upstream's shape (maintenance_jobs_cli.py:309-316)."""
    failed = exit_code != 0
    return {
        "job": "daily_health_summary",
        "generated_at": "2026-01-01T03:31:00+00:00",
        "overall_status": overall,
        "runtime_health": {
            "command": "/srv/oroboros/current/scripts/runtime-health-check.sh",
            "exit_code": exit_code,
            "ok": not failed,
            "stdout_tail": [],
            "stderr_tail": ["./scripts/preview-slots-health-check.sh: No such file or directory"]
            if failed
            else [],
        },
        "preview_reset_integrity": {
            "job": "preview_reset_integrity_audit",
            "status": "no_data",
            "generated_at": "2026-01-01T03:31:00+00:00",
            "window_start": "2025-12-31T03:31:00+00:00",
            "counts": dict.fromkeys(COUNTS, 0),
            "issues": [],
            "latest_by_slot": [],
        },
        "release_summary": {
            "limit": 20,
            "count": 0,
            "status_counts": {},
            "latest": None,
            "latest_deployed": None,
        },
        "slot_lease_summary": {
            "configured_slots": ["preview-1"],
            "state_counts": {"available": 1},
            "states": [{"slot_id": "preview-1", "state": "available", "run_id": None}],
        },
    }


def newest(document: object) -> NewestFile:
    return NewestFile(path=PATH, age_s=60, text=json.dumps(document))


def test_profile_declares_upstreams_status_field() -> None:
    """The oroboros profile reads ``overall_status`` and counts only ``passed`` as success."""
    output = _timer().output
    assert output is not None
    assert output.status is not None
    assert (output.status.field, output.status.ok) == ("overall_status", ("passed",))


def test_passed_summary_passes() -> None:
    schedule.test_output_shape(_timer(), newest(summary("passed")))


def test_failed_summary_fails_with_its_own_reason() -> None:
    """Upstream's summary of a healthy host, run from backend/: well-formed, overall_status failed."""
    with pytest.raises(CheckFailed) as caught:
        schedule.test_output_shape(_timer(), newest(summary("failed", exit_code=127)))
    assert caught.value.reason == "job_output_reports_failure"
    assert caught.value.observed == {"overall_status": "failed"}
    assert caught.value.expected == {"overall_status": ["passed"]}
    assert "overall_status='failed'" in str(caught.value)


def test_malformed_summary_is_malformed_not_failed() -> None:
    """A schema violation is reported as such, before the outcome is read."""
    document = summary("passed")
    del document["release_summary"]
    with pytest.raises(CheckFailed) as caught:
        schedule.test_output_shape(_timer(), newest(document))
    assert caught.value.reason == "job_output_malformed"


def test_unknown_status_value_fails() -> None:
    """A value outside the schema's enum is malformed (the schema names passed/failed only)."""
    with pytest.raises(CheckFailed) as caught:
        schedule.test_output_shape(_timer(), newest(summary("unknown")))
    assert caught.value.reason == "job_output_malformed"


def test_missing_output_is_undetermined() -> None:
    with pytest.raises(Undetermined):
        schedule.test_output_shape(_timer(), NewestFile(path=None, age_s=None, text=None))


def test_status_without_schema_is_still_read() -> None:
    """A profile that declares a status field but no schema still fails a run reporting failure, and a
    document without the field is malformed."""
    base = _timer()
    assert base.output is not None
    timer = dataclasses.replace(base, output=dataclasses.replace(base.output, schema=None))
    schedule.test_output_shape(timer, newest({"overall_status": "passed"}))
    with pytest.raises(CheckFailed) as failed:
        schedule.test_output_shape(timer, newest({"overall_status": "failed"}))
    assert failed.value.reason == "job_output_reports_failure"
    with pytest.raises(CheckFailed) as missing:
        schedule.test_output_shape(timer, newest(["not", "an", "object"]))
    assert missing.value.reason == "job_output_malformed"


def test_profile_rejects_empty_success_values(tmp_path: Path) -> None:
    """``ok: []`` is a configuration error naming the file and the location."""
    text = (Path(__file__).resolve().parents[2] / "conformance/profiles/oroboros.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("status: {field: overall_status, ok: passed}", "status: {field: overall_status, ok: []}")
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml.*(status|ok)"):
        load_profile(str(bad), {})


@pytest.mark.skipif(
    not TARBALL.is_file() and not os.environ.get("CI"), reason=f"no upstream snapshot at {TARBALL}"
)
def test_upstream_writes_overall_status() -> None:
    """Upstream writes ``overall_status`` at the top level, ``passed`` on success and ``failed`` otherwise."""
    with tarfile.open(TARBALL) as tar:
        handle = tar.extractfile(CLI)
        assert handle is not None
        source = handle.read().decode("utf-8")
    assert re.search(r'^\s+overall_status = "passed"$', source, re.M)
    assert len(re.findall(r'^\s+overall_status = "failed"$', source, re.M)) == 2
    assert '"overall_status": overall_status,' in source
    assert 'exit_code = 0 if overall_status == "passed" else 2' in source

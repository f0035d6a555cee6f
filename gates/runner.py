"""Run the conformance suite in a child pytest process and collect its results.

The child is isolated (its own interpreter, memory limit and wall-clock limit), so a
hostile target cannot take the CLI down with it; results stream back as NDJSON, and any
check that left no result is later reported `not_run`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conformance
from conformance.errors import ConfigError

SUITE_DIR = Path(conformance.__file__).resolve().parent / "suite"
SUITE_INI = SUITE_DIR / "suite.ini"
# The check run's data limit (RLIMIT_DATA: heap and private writable mappings, not reserved address space),
# so a hostile target that makes a probe allocate without bound ends that probe, not the machine.
DEFAULT_MEMORY_MB = 512
MEMORY_ENV = "GATES_SUITE_MEMORY_MB"
SETS_ENV = "GATES_SETS_JSON"
EVIDENCE_SUBDIR = (
    "paid-call"  # where the check run writes paid-call bundles (conformance.paidcall_bundle.SUBDIR)
)
# every evidence directory the check run may write (conformance.probes.healthdrill.SUBDIR: the drill's timings)
EVIDENCE_SUBDIRS = (EVIDENCE_SUBDIR, "health-drill")


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteRun:
    """What the child run left behind."""

    results: dict[str, dict[str, Any]]
    returncode: int
    timed_out: bool
    log: Path


def memory_limit_bytes() -> int:
    """``$GATES_SUITE_MEMORY_MB`` MiB (default 512); a value that is not a whole number of MiB is a `ConfigError`."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_MB << 20
    if not raw.isdigit() or int(raw) < 64:
        raise ConfigError(
            f"expected a whole number of MiB, at least 64, got {raw!r}", source=f"<environment {MEMORY_ENV}>"
        )
    return int(raw) << 20


def _limiter(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


def read_results(path: Path, *, validate: bool = False) -> dict[str, dict[str, Any]]:
    """Parse results.ndjson; a torn last line (a killed run) is ignored.

    With ``validate``, a record that does not match ``schemas/check-result.schema.json`` is dropped,
    so its check counts as not run rather than being trusted.
    """
    from conformance import _schemas

    out: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "id" not in record:
            continue
        if validate and _schemas.errors(record, "check-result"):
            continue
        out[str(record["id"])] = record
    return out


class SuiteProcess:
    """A running check run: started early, waited for later."""

    def __init__(
        self,
        *,
        profile: str,
        sets: Sequence[str],
        target: str,
        checks: Sequence[str],
        out: Path,
        allow_drills: bool = False,
        allow_spend_cents: int | None = None,
        waivers: Path | None = None,
    ) -> None:
        # Everything is written to a scratch directory first and moved to ``out`` by `wait`,
        # so a run refused for bad input leaves nothing behind.
        self.out = out
        memory_limit = memory_limit_bytes()
        self.work = Path(tempfile.mkdtemp(prefix="gates-run-"))
        run_dir = self.work / "run"
        run_dir.mkdir()
        self.results_path = run_dir / "results.ndjson"
        self.results_path.unlink(missing_ok=True)
        self.log = run_dir / "pytest.log"
        argv = [
            sys.executable, "-m", "pytest", "-c", str(SUITE_INI), "--rootdir", str(SUITE_DIR), str(SUITE_DIR),
            "-p", "conformance.plugin", "-p", "pytest_metadata.plugin", "-p", "pytest_html.plugin",
            "--gates-profile", profile, "--gates-target", target, "--gates-results", str(self.results_path),
            "--gates-only", ",".join(checks),
            "--junitxml", str(self.work / "junit.xml"), "-o", "junit_family=xunit2", "-o", "junit_suite_name=gates",
            "--html", str(self.work / "pytest-report.html"), "--self-contained-html", "-q", "-rfE", "--no-header",
            "--gates-evidence", str(self.work),
            *(["--gates-allow-drills"] if allow_drills else []),
            *(["--gates-allow-spend-cents", str(allow_spend_cents)] if allow_spend_cents is not None else []),
            *(["--gates-waivers", str(waivers)] if waivers is not None else []),
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "MALLOC_ARENA_MAX": "2",
            SETS_ENV: json.dumps(list(sets)),
        }
        self.started = time.monotonic()
        with self.log.open("wb") as log_file:
            self.child = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_limiter(memory_limit), start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """Stop the run (its process group) at once and discard its scratch directory."""
        self._stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def _stop(self) -> None:
        if self.child.poll() is None:
            os.killpg(self.child.pid, 9)
        self.child.wait()

    def _publish(self) -> None:
        (self.out / "run").mkdir(parents=True, exist_ok=True)
        for rel in ("junit.xml", "pytest-report.html", "run/results.ndjson", "run/pytest.log"):
            source = self.work / rel
            (self.out / rel).unlink(
                missing_ok=True
            )  # never leave a previous run's file beside this run's reports
            if source.exists():
                shutil.move(str(source), str(self.out / rel))
        # evidence bundles accumulate: each is named by its gate, so one run never replaces another's
        for bundle in sorted(p for sub in EVIDENCE_SUBDIRS for p in (self.work / sub).glob("*")):
            if not bundle.name.startswith("."):
                target = self.out / bundle.parent.name / bundle.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
                shutil.move(str(bundle), str(target))
        shutil.rmtree(self.work, ignore_errors=True)

    def wait(
        self, *, timeout_s: float, progress: Callable[[frozenset[str], float], None] | None = None
    ) -> SuiteRun:
        """Wait for the run, reporting progress; past ``timeout_s`` it is killed and what finished is kept."""
        timed_out = False
        while True:
            try:
                self.child.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - self.started
                if progress is not None:
                    progress(frozenset(read_results(self.results_path)), elapsed)
                if elapsed > timeout_s:
                    timed_out = True
                    self._stop()
                    break
        self._publish()
        results = read_results(self.out / "run" / "results.ndjson", validate=True)
        return SuiteRun(results=results, returncode=self.child.returncode, timed_out=timed_out,
                        log=self.out / "run" / "pytest.log")  # fmt: skip


def run_suite(
    *,
    profile: str,
    sets: Sequence[str],
    target: str,
    checks: Sequence[str],
    out: Path,
    timeout_s: float,
    progress: Callable[[frozenset[str], float], None] | None = None,
) -> SuiteRun:
    """Run the checks ``checks`` of the suite against ``profile``; write junit.xml and pytest-report.html in ``out``."""
    process = SuiteProcess(profile=profile, sets=sets, target=target, checks=checks, out=out)
    return process.wait(timeout_s=timeout_s, progress=progress)

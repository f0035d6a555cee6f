"""Unit tests for `gates.cli.run`: usage and configuration errors, and the offline commands."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from conformance.checks import catalog, load_suite
from conformance.profile import load_profile
from fixtures.registry import REFERENCES
from gates.cli import run

INSTANCE_ID = re.compile(r"^[a-z_]+\.[a-z_]+\.[a-z_]+\[[^\]]+\]$")
BAD_GATE = """\
schemaVersion: gates.gate/v1
name: sample-gate
report: sample-gate.json
requires:
  - check: health.http.status_exact
  - check: health.http.nope
"""


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI with captured output; return exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = run(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def usage_error(argv: list[str]) -> str:
    """Run ``argv``, assert it is a one-line usage error with exit code 2, and return that line."""
    code, _, err = invoke(argv)
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gates: error: ")
    return lines[0]


class TestUsageErrors:
    """Bad arguments and bad input files give exit code 2 and one 'gates: error:' line."""

    @pytest.mark.parametrize(
        ("argv", "needle"),
        [
            ([], "required"),
            (["bogus"], "invalid choice"),
            (["run"], "--profile"),
            (["run", "--profile", "nope"], "unknown profile 'nope'"),
            (["run", "--profile", "oroboros", "--gate", "nope"], "unknown gate 'nope'"),
            (["run", "--profile", "oroboros", "--set", "nosuch=1"], "nosuch"),
            (["run", "--profile", "oroboros", "--set", "nosuch"], "NAME=VALUE"),
            (["faults", "nope"], "unknown reference 'nope'"),
            (["reference", "up", "nope"], "unknown reference 'nope'"),
            (["reference", "up", "oroboros", "--fault", "nope"], "unknown fault 'nope'"),
        ],
        ids=[
            "no-arguments",
            "unknown-subcommand",
            "run-without-profile",
            "unknown-profile",
            "unknown-gate",
            "set-undeclared-variable",
            "set-without-equals",
            "faults-unknown-reference",
            "reference-up-unknown",
            "reference-up-unknown-fault",
        ],
    )
    def test_usage_error(self, argv: list[str], needle: str) -> None:
        """The command exits 2 with one error line that says what is wrong."""
        assert needle in usage_error(argv)

    def test_bad_profile_yaml(self, tmp_path: Path) -> None:
        """A profile file with broken YAML is reported with its path and line."""
        path = tmp_path / "profile.yaml"
        path.write_text("schemaVersion: gates.profile/v1\nservices: [\n", encoding="utf-8")
        line = usage_error(["run", "--profile", str(path)])
        assert str(path) in line
        assert "line" in line
        assert "invalid YAML" in line

    def test_gate_with_unknown_check(self, tmp_path: Path) -> None:
        """A gate file naming an unknown check id is reported with its path, line and the bad id."""
        path = tmp_path / "gate.yaml"
        path.write_text(BAD_GATE, encoding="utf-8")
        line = usage_error(["run", "--profile", "oroboros", "--gate", str(path)])
        assert str(path) in line
        assert "line 6" in line
        assert "health.http.nope" in line

    def test_verify_missing_report(self, tmp_path: Path) -> None:
        """verify-report of a file that does not exist is a usage error naming the file."""
        path = tmp_path / "absent.json"
        line = usage_error(["verify-report", str(path)])
        assert str(path) in line

    def test_verify_non_json_report(self, tmp_path: Path) -> None:
        """verify-report of a file that is not JSON is a usage error."""
        path = tmp_path / "report.json"
        path.write_text("not json", encoding="utf-8")
        assert "not JSON" in usage_error(["verify-report", str(path)])


class TestFaultsCommand:
    """`gates faults NAME` lists a reference's faults and the instances each trips."""

    def test_fault_of_another_reference_is_refused_with_a_pointer(self) -> None:
        """`reference up oroboros --fault oroboros-host:X` exits 2 and names the reference to use."""
        code, _, err = invoke(["reference", "up", "oroboros", "--fault", "oroboros-host:deploy-non-atomic"])
        assert code == 2
        assert "gates reference up oroboros-host --fault deploy-non-atomic" in err

    def test_lists_every_fault(self) -> None:
        """Every line is FAULT_ID, a tab, and comma-separated check instance ids; the profile's other
        references follow with REFERENCE:FAULT_ID, so the listing is the profile's whole catalogue."""
        code, out, err = invoke(["faults", "oroboros"])
        assert code == 0
        assert err == ""
        lines = out.splitlines()
        expected = [f.id for f in REFERENCES["oroboros"].faults]
        expected += [f"oroboros-host:{f.id}" for f in REFERENCES["oroboros-host"].faults]
        expected += [f"oroboros-upstream:{f.id}" for f in REFERENCES["oroboros-upstream"].faults]
        expected += [f"oroboros-upstream-host:{f.id}" for f in REFERENCES["oroboros-upstream-host"].faults]
        assert [line.split("\t")[0] for line in lines] == expected
        for line in lines:
            fault_id, _, trips = line.partition("\t")
            assert re.fullmatch(r"([a-z0-9-]+:)?[a-z0-9-]+", fault_id), line
            ids = trips.split(",")
            assert ids, line
            assert ids == sorted(ids), line
            for instance in ids:
                assert INSTANCE_ID.match(instance), instance


class TestListCommand:
    """`gates list --profile NAME` shows a profile's gates and check instances."""

    def test_lists_gates_and_instances(self) -> None:
        """The listing names the runtime-health gate and its instances."""
        code, out, _ = invoke(["list", "--profile", "oroboros"])
        assert code == 0
        assert "runtime-health" in out
        assert "runtime-topology" in out
        assert "  health.http.body_exact[api]\n" in out

    def test_lists_variables(self) -> None:
        """Every variable with its default, whether it is secret, its env var and its description; no secret shown."""
        code, out, _ = invoke(["list", "--profile", "oroboros"])
        assert code == 0
        rows = {line.split()[0]: line.split(None, 4) for line in out.splitlines() if line.startswith("  ")}
        assert rows["process_manager"][1:4] == ["systemd", "no", "-"]
        assert rows["process_manager"][4].startswith("systemd, or none")
        assert rows["postgres.password"][1:4] == ["(hidden)", "yes", "GATES_OROBOROS_PG_PASSWORD"]
        assert rows["drill.deploy_command"][1] == "${paths.repo_root}/scripts/deploy.sh"
        code, out, _ = invoke(["list", "--profile", "nooterra", "--set", "serving_mode=self-host"])
        assert code == 0
        assert "GATES_NOOTERRA_OPS_TOKEN" in out

    def test_set_applies(self) -> None:
        """list accepts --set and rejects an undeclared variable like run does."""
        assert invoke(["list", "--profile", "oroboros", "--set", "ports.api=18000"])[0] == 0
        assert "nosuch" in usage_error(["list", "--profile", "oroboros", "--set", "nosuch=1"])


class TestFaultCatalogue:
    """The references' faults cover the whole check registry with real instance ids."""

    def test_every_check_is_tripped(self) -> None:
        """Every registered check id is tripped by at least one fault of some reference."""
        tripped = {t.split("[", 1)[0] for ref in REFERENCES.values() for f in ref.faults for t in f.trips}
        assert set(load_suite()) - tripped == set()

    @pytest.mark.parametrize(
        ("name", "sets"),
        [
            ("oroboros", {"process_manager": "none"}),
            ("oroboros-host", {}),
            ("nooterra-bundle", {}),
            # what the reference's run arguments set: a staging env file to compare, the drill's commands
            (
                "nooterra",
                {
                    "staging.env_file": "/srv/staging/api.env",
                    "drill.migrate_command": "/usr/bin/migrate",
                    "drill.rollback_command": "/usr/bin/migrate-back",
                },
            ),
        ],
    )
    def test_every_tripped_instance_exists(self, name: str, sets: dict[str, str]) -> None:
        """Every instance id a reference's fault lists is in the catalogue its profile implies."""
        ref = REFERENCES[name]
        # the secrets the reference's certifier reads from the environment give the checks that need them targets
        known = {i.id for i in catalog(load_profile(ref.profile, sets, environ=dict(ref.environment)))}
        listed = {t for f in ref.faults for t in f.trips}
        assert listed - known == set()

    def test_fault_ids_unique(self) -> None:
        """No two faults of one reference share an id."""
        for ref in REFERENCES.values():
            ids = [f.id for f in ref.faults]
            assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("argv", "source", "words"),
    [
        (["--timeout", "-1"], "<argument --timeout>", "positive number of seconds"),
        (["--timeout", "0"], "<argument --timeout>", "positive number of seconds"),
        (["--timeout", "inf"], "<argument --timeout>", "positive number of seconds"),
        (["--captured-at", "yesterday"], "<argument --captured-at>", "ISO 8601"),
        (["--captured-at", "2026-01-01T00:00:00"], "<argument --captured-at>", "has no zone"),
        (["--memory-limit-mb", "8"], "<argument --memory-limit-mb>", "whole number of MiB"),
        (["--set", "ports.api=http"], "<argument --set ports.api>", "expected an integer"),
        (["--set", "host=999.1.1.1"], "<argument --set host>", "IP address or host name"),
    ],
    ids=["negative-timeout", "zero-timeout", "infinite-timeout", "unparseable-timestamp", "timestamp-without-zone",
         "tiny-memory-limit", "port-of-wrong-type", "no-such-address"],
)  # fmt: skip
def test_nonsense_arguments_stop_the_run_naming_the_argument(
    argv: list[str], source: str, words: str
) -> None:
    """A run with an argument that makes no sense never starts: exit 2, one line naming the argument."""
    message = usage_error(["run", "--profile", "oroboros", "--out", "/nonexistent/never-written", *argv])
    assert message.startswith(f"gates: error: {source}: "), message
    assert words in message


@pytest.mark.parametrize(
    "out", ["/proc/gates-no-such-dir", "/dev/null/reports"], ids=["proc", "under-a-file"]
)
def test_an_output_directory_that_cannot_be_written_stops_the_run_first(out: str) -> None:
    """Reports that could not be written are refused before any check runs, naming --out."""
    message = usage_error(["run", "--profile", "oroboros", "--out", out])
    assert message.startswith("gates: error: <argument --out>: cannot write reports to "), message

"""Fuzz tier: malformed and hostile input files for every loader the CLI exposes.

Whatever the bytes, a loader either accepts the file or refuses it with a `ConfigError` that names the file and a
place inside it (exit 2, one line, no traceback). Hostile shapes -- aliases that expand exponentially, deep nesting,
oversized files -- are generated on purpose beside random edits of real files. Examples are few and derandomized so
the tier is cheap and repeatable in CI; the per-example deadline is generous, there only to flag an input whose
cost explodes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.canonical import canonical_hash
from conformance.errors import ConfigError
from conformance.profile import load_profile
from conformance.waivers import load_waivers
from gates.cli import run
from gates.gate import build_gate, parse_gate

ROOT = Path(__file__).resolve().parents[2]
PROFILE_SEED = (ROOT / "conformance" / "profiles" / "oroboros.yaml").read_text(encoding="utf-8")
GATE_SEED = (ROOT / "gates" / "definitions" / "runtime-topology.yaml").read_text(encoding="utf-8")
FUZZ = settings(
    max_examples=40,
    deadline=dt.timedelta(seconds=20),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies ------------------------------------------------------------------------------------


@st.composite
def edited(draw: st.DrawFn, seed: str) -> str:
    """``seed`` with a few random deletions, insertions and line swaps."""
    text = seed
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 40))
        insert = draw(
            st.one_of(
                st.text(max_size=20),
                st.sampled_from(["&a ", "*a", "<<: *a", ": ", "- ", "\t", "{", "[", "!!python/object:os.system", "~",
                                 "${", "${nope}", "2026-13-45", "0x", "1e999", "\n  ", "'", '"', "? ", "|", "\0"]),
            )
        )  # fmt: skip
        text = text[:at] + insert + text[at + cut :]
    return text


@st.composite
def laughs(draw: st.DrawFn) -> str:
    """Aliases nested so that the document expands exponentially (a billion laughs), via sequences or merges."""
    width, depth = draw(st.integers(2, 12)), draw(st.integers(3, 12))
    merge = draw(st.booleans())
    lines = ['l0: &l0 {a: "lol", b: "lol"}' if merge else 'l0: &l0 ["lol", "lol"]']
    for i in range(1, depth):
        if merge:
            lines.append(f"l{i}: &l{i} {{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(width)) + "}")
        else:
            lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@st.composite
def nested(draw: st.DrawFn, *, json_syntax: bool) -> str:
    """A document nested ``depth`` levels deep in flow collections."""
    depth = draw(st.integers(60, 20_000))
    opener, closer = draw(
        st.sampled_from([("[", "]"), ('{"a":', "}")] if json_syntax else [("[", "]"), ("{a: ", "}")])
    )
    return opener * depth + "1" + closer * depth


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)

# --- the assertion ----------------------------------------------------------------------------------


def refused_at_a_place(error: ConfigError, path: Path) -> None:
    """The refusal names the file and where in it."""
    assert error.source == str(path), error.render()
    assert error.location, error.render()
    assert "Traceback" not in error.render()


def cli_refuses(argv: list[str], path: Path, *, ok: tuple[int, ...] = (0,)) -> None:
    """The CLI in-process: an accepted file exits with one of ``ok``; anything else is exit 2 with one line naming it."""
    out, err = io.StringIO(), io.StringIO()
    code = run(argv, stdout=out, stderr=err)
    if code in ok:
        return
    assert code == 2, (code, err.getvalue())
    text = err.getvalue()
    assert text.startswith(f"gates: error: {path}"), text
    assert text.count("\n") == 1, text
    assert "Traceback" not in text


def write(directory: str, name: str, text: str | bytes) -> Path:
    """Write a fuzzed file."""
    path = Path(directory) / name
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return path


YAML_INPUTS = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    laughs(),
    nested(json_syntax=False),
)

# --- profiles ----------------------------------------------------------------------------------------


class TestProfileLoader:
    """Profiles: random edits of the built-in profile and hostile documents."""

    @FUZZ
    @given(text=st.one_of(edited(PROFILE_SEED), YAML_INPUTS))
    def test_a_profile_loads_or_is_refused_at_a_place(self, text: str) -> None:
        """Load or refuse with file and location; never another exception."""
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, "profile.yaml", text)
            try:
                load_profile(str(path), environ={})
            except ConfigError as error:
                refused_at_a_place(error, path)

    @settings(FUZZ, max_examples=10)
    @given(text=st.one_of(laughs(), nested(json_syntax=False), edited(PROFILE_SEED)))
    def test_gates_list_exits_2_with_one_line(self, text: str) -> None:
        """Through the CLI: exit 0 or 2, one line naming the file."""
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, "profile.yaml", text)
            cli_refuses(["list", "--profile", str(path)], path)


# --- gate definitions ---------------------------------------------------------------------------------


class TestGateLoader:
    """Gate definition files."""

    @FUZZ
    @given(text=st.one_of(edited(GATE_SEED), YAML_INPUTS))
    def test_a_gate_file_loads_or_is_refused_at_a_place(self, text: str) -> None:
        """Parse and build, or refuse with file and location."""
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, "gate.yaml", text)
            try:
                build_gate(parse_gate(str(path), profile="oroboros"), profile="oroboros")
            except ConfigError as error:
                refused_at_a_place(error, path)


# --- waivers ------------------------------------------------------------------------------------------------

WAIVER_SEED = (
    "schemaVersion: gates.waivers/v1\nwaivers:\n"
    "  - check: health.redis.ping[cache]\n    reason: the cache is rebuilt nightly\n"
    "    approver: ops\n    created: 2026-01-01\n    expires: 2030-01-01\n"
)


class TestWaiverLoader:
    """Waiver files, through the same bounded YAML loader."""

    @FUZZ
    @given(text=st.one_of(edited(WAIVER_SEED), YAML_INPUTS))
    def test_a_waivers_file_loads_or_is_refused_at_a_place(self, text: str) -> None:
        """Load or refuse with file and location."""
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, "waivers.yaml", text)
            try:
                load_waivers(path, ["health.redis.ping", "health.http.status_exact"])
            except ConfigError as error:
                refused_at_a_place(error, path)


# --- verify-report ---------------------------------------------------------------------------------------


def _report_like(value: Any) -> dict[str, Any]:
    return {
        "schemaVersion": "GatesGateReport.v1",
        "gate": "runtime-health",
        "verdict": value,
        "artifactHash": "0" * 64,
    }


class TestVerifyReport:
    """Reports given to verify-report (and --supplied, which goes through the same loader)."""

    @FUZZ
    @given(
        body=st.one_of(
            JSON.map(json.dumps),
            JSON.map(lambda v: json.dumps(_report_like(v))),
            nested(json_syntax=True),
            st.text(max_size=200),
            st.integers(0, 3).map(lambda n: "[" + "1," * (70_000 * n) + "1]"),
        )
    )
    def test_verify_report_exits_2_naming_the_file(self, body: str) -> None:
        """Never a traceback; a refusal names the report and a place in it."""
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, "report.json", body)
            cli_refuses(["verify-report", str(path)], path)


# --- verify-receipt --------------------------------------------------------------------------------------


def _sealed(directory: Path, context: bytes) -> None:
    """A bundle whose manifest is consistent with a fuzzed context.json, so loading reaches its validation."""
    files = [{"path": "context.json", "sha256": hashlib.sha256(context).hexdigest(), "bytes": len(context),
              "schema": "paid-call-context"}]  # fmt: skip
    (directory / "context.json").write_bytes(context)
    manifest = {"schemaVersion": "GatesPaidCallManifest.v1", "gateId": "x402gate_fuzz", "files": files,
                "bundleSha256": canonical_hash(files)}  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


class TestVerifyReceipt:
    """Paid-call bundles given to verify-receipt."""

    @FUZZ
    @given(manifest=st.one_of(JSON.map(json.dumps), nested(json_syntax=True), st.text(max_size=100)))
    def test_a_fuzzed_manifest_exits_2(self, manifest: str) -> None:
        """A manifest of any shape: exit 2 naming it."""
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, "manifest.json", manifest)
            cli_refuses(["verify-receipt", tmp], path, ok=())

    @FUZZ
    @given(
        context=st.one_of(
            JSON, st.dictionaries(st.sampled_from(["name", "exchanges", "gateId", "token"]), JSON)
        )
    )
    def test_a_fuzzed_context_behind_a_consistent_manifest_exits_2(self, context: Any) -> None:
        """The manifest checks out, the context does not: exit 2 naming a file of the bundle, never a traceback."""
        with tempfile.TemporaryDirectory() as tmp:
            _sealed(Path(tmp), json.dumps(context).encode())
            out, err = io.StringIO(), io.StringIO()
            code = run(["verify-receipt", tmp], stdout=out, stderr=err)
            assert code == 2, err.getvalue()
            assert err.getvalue().startswith(f"gates: error: {tmp}/"), err.getvalue()
            assert "Traceback" not in err.getvalue()

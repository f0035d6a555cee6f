"""Redaction masks secret values where they occur as values, and never rewrites ids or names."""

from __future__ import annotations

import pytest

from conformance.redact import MASK, Redactor, is_strong

WEAK = Redactor(["postgres"])  # the documented default database password


@pytest.mark.parametrize(
    "text",
    [
        "test_postgres_accepting[postgres]",
        "health.postgres.accepting[postgres]",
        "postgres at 127.0.0.1:5432: no response",
        "systemctl show postgresql.service",
        "unit: postgresql.service, user postgres",
        "PGUSER=postgres",
        '<testcase classname="test_health" name="test_postgres_accepting[postgres]"/>',
    ],
)
def test_weak_secret_leaves_names_alone(text: str) -> None:
    """Ids, test names, unit and service names and non-secret keys are never rewritten."""
    assert WEAK.text(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("postgresql://postgres:postgres@127.0.0.1:5432/app", f"postgresql://postgres:{MASK}@127.0.0.1:5432/app"),
        ("PGPASSWORD=postgres psql -h x", f"PGPASSWORD={MASK} psql -h x"),
        ("host=127.0.0.1 user=postgres password=postgres dbname=app",
         f"host=127.0.0.1 user=postgres password={MASK} dbname=app"),
        ("password='postgres'", f"password='{MASK}'"),
        ('{"password": "postgres", "user": "postgres"}', f'{{"password": "{MASK}", "user": "postgres"}}'),
        ("Authorization: Bearer postgres", f"Authorization: Bearer {MASK}"),
        ("x-proxy-ops-token: postgres", f"x-proxy-ops-token: {MASK}"),
        ("DB_PASSWORD: postgres\n", f"DB_PASSWORD: {MASK}\n"),
    ],
)  # fmt: skip
def test_weak_secret_masked_as_a_value(text: str, want: str) -> None:
    """URLs and DSNs, env assignments, JSON, headers: the value goes, the key and the rest stay."""
    assert WEAK.text(text) == want


def test_strong_secret_masked_anywhere() -> None:
    """A token long or mixed enough to be a secret is masked wherever it appears, even inside other text."""
    r = Redactor(["tok_nooterra_ref_ops", "canary-Zq7xK2pW9m"])
    assert r.text("token tok_nooterra_ref_ops rejected") == f"token {MASK} rejected"
    assert r.text("x=canary-Zq7xK2pW9m;y") == f"x={MASK};y"
    assert r.text("[canary-Zq7xK2pW9m]") == f"[{MASK}]"


def test_strength() -> None:
    """Dictionary-like words are weak; long or mixed values are strong."""
    assert not is_strong("postgres")
    assert not is_strong("nooterra")
    assert is_strong("Zq7xK2pW")
    assert is_strong("averylongpassword")


def test_scrub_structures() -> None:
    """In JSON-like data a known secret under a secret-named key is masked; the same word elsewhere is not."""
    got = WEAK.scrub({"password": "postgres", "service": "postgres", "dsn": "postgresql://u:postgres@h/d"})
    assert got == {"password": MASK, "service": "postgres", "dsn": f"postgresql://u:{MASK}@h/d"}


def test_short_values_are_not_secrets() -> None:
    """Values under four characters are never masked as secrets (too likely to be something else)."""
    assert Redactor(["abc"]).text("password=abc") == "password=abc"

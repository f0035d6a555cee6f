"""Unit tests for `conformance.envfile.parse_env`, the systemd EnvironmentFile= reader."""

from __future__ import annotations

from conformance.envfile import parse_env


class TestParseEnv:
    """`parse_env` reads KEY=VALUE lines the way systemd does."""

    def test_comments_and_blank_lines_skipped(self) -> None:
        """Lines starting with '#' or ';' and blank lines are neither assignments nor invalid."""
        parsed = parse_env("# comment\n; another\n\n   \n  # indented comment\nA=1\n")
        assert parsed.effective() == {"A": "1"}
        assert parsed.invalid_lines == ()
        assert parsed.assignments[0].line == 6

    def test_plain_value(self) -> None:
        """Whitespace around key and value is stripped and the value is kept verbatim."""
        assert parse_env("  KEY = some value  \n").effective() == {"KEY": "some value"}

    def test_value_with_equals(self) -> None:
        """Only the first '=' separates key from value."""
        assert parse_env("URL=postgresql://u:p@h/db?a=b\n").effective() == {
            "URL": "postgresql://u:p@h/db?a=b"
        }

    def test_double_quotes(self) -> None:
        """Double quotes are removed and backslash-escaped quotes inside them are unescaped."""
        parsed = parse_env('A="x y"\nB="say \\"hi\\""\n')
        assert parsed.effective() == {"A": "x y", "B": 'say "hi"'}

    def test_single_quotes(self) -> None:
        """Single quotes are removed and their content is taken literally."""
        assert parse_env("A='x \\\" y'\n").effective() == {"A": 'x \\" y'}

    def test_unbalanced_quote_kept(self) -> None:
        """A value with only an opening quote keeps the quote."""
        assert parse_env('A="open\n').effective() == {"A": '"open'}

    def test_empty_value(self) -> None:
        """KEY= assigns the empty string."""
        assert parse_env("A=\n").effective() == {"A": ""}

    def test_last_assignment_wins(self) -> None:
        """When a key is assigned twice, effective() holds the last value."""
        parsed = parse_env("A=1\nB=2\nA=3\n")
        assert parsed.effective() == {"A": "3", "B": "2"}
        assert [a.value for a in parsed.assignments] == ["1", "2", "3"]

    def test_duplicates_report_line_numbers(self) -> None:
        """duplicates() maps each repeated key to the lines that assign it."""
        parsed = parse_env("A=1\n# c\nB=2\nA=3\nB=4\nA=5\nC=6\n")
        assert parsed.duplicates() == {"A": [1, 4, 6], "B": [3, 5]}

    def test_no_duplicates(self) -> None:
        """duplicates() is empty when every key is assigned once."""
        assert parse_env("A=1\nB=2\n").duplicates() == {}

    def test_invalid_lines_recorded(self) -> None:
        """Lines without '=' or with an invalid key are recorded by line number and skipped."""
        parsed = parse_env("A=1\nnot an assignment\n1BAD=x\nBAD KEY=y\n=z\nB=2\n")
        assert parsed.invalid_lines == (2, 3, 4, 5)
        assert parsed.effective() == {"A": "1", "B": "2"}

    def test_backslash_continuation(self) -> None:
        """A trailing backslash joins the next line, and the assignment keeps the first line's number."""
        parsed = parse_env("A=one\\\ntwo\\\nthree\nB=4\n")
        assert parsed.effective() == {"A": "onetwothree", "B": "4"}
        assert [(a.key, a.line) for a in parsed.assignments] == [("A", 1), ("B", 4)]

    def test_backslash_on_last_line(self) -> None:
        """A trailing backslash on the last line is kept as part of the value."""
        assert parse_env("A=x\\").effective() == {"A": "x\\"}

    def test_no_trailing_newline(self) -> None:
        """A file without a trailing newline still yields its last assignment."""
        assert parse_env("A=1\nB=2").effective() == {"A": "1", "B": "2"}

    def test_crlf_line_endings(self) -> None:
        """Carriage returns of CRLF line endings do not end up in values."""
        assert parse_env("A=1\r\nB=2\r\n").effective() == {"A": "1", "B": "2"}

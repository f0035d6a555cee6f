"""Unit tests for `conformance.profile`: loading the built-in profile and rejecting bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.errors import ConfigError
from conformance.profile import EnvFile, Profile, load_profile, parse_sets

HEADER = "schemaVersion: gates.profile/v1\nname: sample\n"
ONE_SERVICE = "services:\n  - name: app\n    kind: http\n    bind: 127.0.0.1\n    port: 8000\n"
SECRET = "correct-horse-battery-staple"


def env_values(profile: Profile, name: str) -> dict[str, str]:
    """The expected key/values of the env file called ``name``."""
    found: EnvFile = next(e for e in profile.env_files if e.name == name)
    return dict(found.values)


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as a profile file under ``tmp_path`` and return its path."""
    path = tmp_path / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, overrides: dict[str, str] | None = None) -> ConfigError:
    """Load ``path`` and return the `ConfigError` it raises."""
    with pytest.raises(ConfigError) as info:
        load_profile(str(path), overrides)
    return info.value


class TestBuiltinProfile:
    """The shipped ``oroboros`` profile."""

    def test_declares_twelve_services(self) -> None:
        """The profile declares the twelve services of the runtime topology."""
        profile = load_profile("oroboros")
        assert len(profile.services) == 12
        assert profile.name == "oroboros"
        assert profile.source == "builtin:oroboros"

    def test_declares_seven_env_files(self) -> None:
        """The profile declares seven environment files under /etc/oroboros."""
        profile = load_profile("oroboros")
        assert len(profile.env_files) == 7
        assert all(e.path.startswith("/etc/oroboros/") for e in profile.env_files)

    def test_declares_six_routes(self) -> None:
        """The reverse proxy has six host routes, each to a declared service."""
        profile = load_profile("oroboros")
        assert profile.routes is not None
        assert len(profile.routes.hosts) == 6
        names = {s.name for s in profile.services}
        assert all(r.upstream in names for r in profile.routes.hosts)
        assert profile.routes.unknown_status == 404

    def test_release_paths(self) -> None:
        """The release symlink and the releases directory sit under the deploy root."""
        profile = load_profile("oroboros")
        assert profile.release is not None
        assert profile.release.current == "/srv/oroboros/current"
        assert profile.release.releases == "/srv/oroboros/releases"

    def test_default_api_port(self) -> None:
        """Without overrides the api listens on 8000 and api.env expects API_PORT=8000."""
        profile = load_profile("oroboros")
        assert profile.service("api").port == 8000
        assert env_values(profile, "api")["API_PORT"] == "8000"

    def test_set_overrides_port_everywhere(self) -> None:
        """Setting ports.api changes both the service port and the api.env expected API_PORT."""
        profile = load_profile("oroboros", parse_sets(["ports.api=18000"]))
        assert profile.service("api").port == 18000
        assert env_values(profile, "api")["API_PORT"] == "18000"

    def test_unknown_service_name_is_key_error(self) -> None:
        """Asking for an undeclared service raises KeyError."""
        with pytest.raises(KeyError):
            load_profile("oroboros").service("nope")

    def test_default_secret_is_not_a_secret(self) -> None:
        """A secret variable's default is written in the profile, so secrets() does not contain it."""
        profile = load_profile("oroboros", environ={})
        assert "postgres" not in profile.secrets()
        assert profile.secrets() == frozenset()

    def test_override_secret_is_a_secret(self) -> None:
        """A secret value given through overrides is listed by secrets()."""
        profile = load_profile("oroboros", {"postgres.password": SECRET}, environ={})
        assert SECRET in profile.secrets()
        assert profile.service("postgres").password == SECRET

    def test_environment_secret_is_a_secret(self) -> None:
        """A secret value taken from the variable's environment variable is listed by secrets()."""
        profile = load_profile("oroboros", environ={"GATES_OROBOROS_PG_PASSWORD": SECRET})
        assert SECRET in profile.secrets()
        assert SECRET in env_values(profile, "api")["DATABASE_URL"]

    def test_override_beats_environment(self) -> None:
        """A --set value takes precedence over the environment variable."""
        profile = load_profile(
            "oroboros",
            {"postgres.password": SECRET},
            environ={"GATES_OROBOROS_PG_PASSWORD": "from-environment"},
        )
        assert profile.service("postgres").password == SECRET

    def test_public_variables_mask_secrets(self) -> None:
        """public_variables() shows ordinary values and masks every secret value."""
        public = load_profile("oroboros", {"postgres.password": SECRET}, environ={}).public_variables()
        assert public["postgres.password"] == "<redacted>"
        assert public["ports.api"] == "8000"
        assert SECRET not in public.values()


class TestProfileErrors:
    """Bad profile input raises `ConfigError` naming the file and a location."""

    def test_invalid_yaml_syntax(self, tmp_path: Path) -> None:
        """Broken YAML syntax is reported with the file and a line."""
        path = write(tmp_path, HEADER + "services: [\n  {name: app\n")
        err = load_error(path)
        assert err.source == str(path)
        assert err.location is not None
        assert "line" in err.location
        assert "invalid YAML" in err.render()
        assert str(path) in err.render()

    def test_schema_violation_wrong_type(self, tmp_path: Path) -> None:
        """A port given as a list is a schema violation located at services[0].port with its line."""
        path = write(tmp_path, HEADER + ONE_SERVICE.replace("port: 8000", "port: [1]"))
        err = load_error(path)
        assert err.location is not None
        assert "services[0].port" in err.location
        assert "line 7" in err.location
        assert "schema" in err.message
        assert str(path) in err.render()

    def test_schema_violation_missing_services(self, tmp_path: Path) -> None:
        """A profile without services is a schema violation naming the missing property and a line."""
        path = write(tmp_path, HEADER)
        err = load_error(path)
        assert "'services' is a required property" in err.message
        assert err.location is not None
        assert "line" in err.location
        assert str(path) in err.render()

    def test_unknown_variable_reference(self, tmp_path: Path) -> None:
        """A ${name} that is not declared is reported at the field that uses it."""
        path = write(tmp_path, HEADER + ONE_SERVICE.replace("bind: 127.0.0.1", "bind: ${nowhere}"))
        err = load_error(path)
        assert "${nowhere}" in err.message
        assert err.location is not None
        assert "services[0].bind" in err.location
        assert "line 6" in err.location

    def test_set_of_undeclared_variable(self, tmp_path: Path) -> None:
        """--set of a variable the profile does not declare is blamed on the --set argument."""
        path = write(tmp_path, HEADER + "variables:\n  port: {default: 8000}\n" + ONE_SERVICE)
        err = load_error(path, {"nosuch": "1"})
        assert err.source == "<argument --set>"
        assert "nosuch" in err.message
        assert "port" in err.message

    def test_set_without_equals(self) -> None:
        """A --set argument without '=' is rejected by parse_sets."""
        with pytest.raises(ConfigError) as info:
            parse_sets(["ports.api"])
        assert info.value.source == "<argument --set>"
        assert "NAME=VALUE" in info.value.message

    def test_parse_sets_keeps_equals_in_value(self) -> None:
        """Only the first '=' separates name from value."""
        assert parse_sets(["a.b=x=y", "c="]) == {"a.b": "x=y", "c": ""}

    def test_duplicate_yaml_key(self, tmp_path: Path) -> None:
        """A key given twice in one mapping is rejected with the line of the second one."""
        path = write(tmp_path, HEADER + "name: other\n" + ONE_SERVICE)
        err = load_error(path)
        assert "duplicate" in err.message
        assert err.location is not None
        assert "line 3" in err.location

    def test_route_to_undeclared_service(self, tmp_path: Path) -> None:
        """A route whose upstream is not a declared service is reported at that upstream."""
        routes = "routes:\n  proxy: app\n  hosts:\n    - {host: a.example.com, upstream: ghost}\n"
        path = write(tmp_path, HEADER + ONE_SERVICE + routes)
        err = load_error(path)
        assert "'ghost' is not a declared service" in err.message
        assert err.location is not None
        assert "routes.hosts[0].upstream" in err.location
        assert "line" in err.location

    def test_duplicate_service_names(self, tmp_path: Path) -> None:
        """Two services with one name are rejected at the second one."""
        second = ONE_SERVICE.replace("services:\n", "").replace("8000", "8001")
        path = write(tmp_path, HEADER + ONE_SERVICE + second)
        err = load_error(path)
        assert "duplicate name 'app'" in err.message
        assert err.location is not None
        assert "services[1]" in err.location

    def test_port_out_of_range_via_set(self) -> None:
        """A port variable set out of range is blamed on the --set argument, naming the service port it feeds."""
        with pytest.raises(ConfigError) as info:
            load_profile("oroboros", {"ports.api": "70000"})
        err = info.value
        assert err.source == "<argument --set ports.api>"
        assert "70000" in err.message
        assert "builtin:oroboros: line" in err.message
        assert "services[5].port" in err.message

    def test_port_of_wrong_type_via_set(self) -> None:
        """A port that is not an integer is blamed on the argument that gave it."""
        with pytest.raises(ConfigError) as info:
            load_profile("oroboros", {"ports.api": "abc"})
        assert info.value.source == "<argument --set ports.api>"
        assert "expected an integer" in info.value.message

    @pytest.mark.parametrize("value", ["999.1.1.1", "1.2.3", "host_name", "-lead.example", "a..b"])
    def test_address_that_is_no_address_is_refused(self, value: str) -> None:
        """A bind address must be an IP address or an RFC 1123 host name; the --set argument is named."""
        with pytest.raises(ConfigError) as info:
            load_profile("oroboros", {"host": value})
        assert info.value.source == "<argument --set host>"
        assert "expected an IP address or host name" in info.value.message

    @pytest.mark.parametrize("value", ["127.0.0.1", "::1", "0.0.0.0", "db.internal", "localhost"])
    def test_real_addresses_pass(self, value: str) -> None:
        """IPv4, IPv6 and host names are addresses."""
        assert load_profile("oroboros", {"host": value}).services[0].bind == value

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("users.runtime", "ops team", "expected a user or group name"),
            ("users.worker", "-x", "expected a user or group name"),
            ("paths.deploy_root", "srv/oroboros", "expected an absolute path"),
            ("paths.env_dir", "etc/oroboros", "expected an absolute path"),
        ],
    )
    def test_account_and_path_variables_are_checked_against_their_use(
        self, name: str, value: str, message: str
    ) -> None:
        """A user name and a path on the target are checked where the profile uses them; the argument is named."""
        with pytest.raises(ConfigError) as info:
            load_profile("oroboros", {name: value})
        assert info.value.source == f"<argument --set {name}>"
        assert message in info.value.message

    @pytest.mark.parametrize("value", ["oroboros", "oroboros-worker", "svc_1", "box$", "1001"])
    def test_real_account_names_pass(self, value: str) -> None:
        """useradd's names (and numeric ids) are accepted as the units' User=."""
        profile = load_profile("oroboros", {"users.runtime": value})
        assert any(s.user == value for s in profile.services)

    def test_url_host_built_from_a_set_variable_blames_it(self) -> None:
        """A default built from a --set variable (a base URL from host) blames that argument."""
        with pytest.raises(ConfigError) as info:
            load_profile("nooterra", {"host": "999.1.1.1", "serving_mode": "self-host"})
        assert info.value.source == "<argument --set host>"

    def test_port_not_an_integer_via_set(self) -> None:
        """A port variable set to text is reported as not an integer."""
        with pytest.raises(ConfigError, match="expected an integer"):
            load_profile("oroboros", {"ports.api": "eighty"})

    def test_unknown_profile_name(self) -> None:
        """A name that is neither a built-in profile nor a file is rejected and the built-ins are listed."""
        with pytest.raises(ConfigError) as info:
            load_profile("no-such-profile")
        assert info.value.source == "<argument --profile>"
        assert "oroboros" in info.value.message


class TestServiceUrl:
    """An http service may be declared by the URL its clients use."""

    def test_url_alone_gives_bind_and_port(self, tmp_path: Path) -> None:
        """Without bind and port, the URL's host and port (or the scheme's default) are where it listens."""
        text = "services:\n  - name: app\n    kind: http\n    url: https://app.example.test/base/\n"
        svc = load_profile(str(write(tmp_path, HEADER + text))).service("app")
        assert (svc.bind, svc.port, svc.url) == ("app.example.test", 443, "https://app.example.test/base")

    def test_url_keeps_declared_listener(self, tmp_path: Path) -> None:
        """With bind and port as well, those stay the listener and the URL is only how clients reach it."""
        text = ONE_SERVICE + "    url: https://app.example.test:8443\n"
        svc = load_profile(str(write(tmp_path, HEADER + text))).service("app")
        assert (svc.bind, svc.port, svc.url) == ("127.0.0.1", 8000, "https://app.example.test:8443")

    def test_url_on_a_database_is_refused(self, tmp_path: Path) -> None:
        """Only an http service is reached by URL; the error names the field."""
        text = (
            "services:\n  - name: db\n    kind: postgres\n    bind: 127.0.0.1\n    port: 5432\n"
            "    database: app\n    dbUser: app\n    url: http://127.0.0.1:5432\n"
        )
        err = load_error(write(tmp_path, HEADER + text))
        assert err.location is not None
        assert "services[0]" in err.location

    def test_url_must_be_http(self, tmp_path: Path) -> None:
        """A URL of another scheme is refused at its line."""
        text = (
            "variables:\n  u: {default: 'ftp://x'}\nservices:\n  - name: app\n    kind: http\n    url: ${u}\n"
        )
        err = load_error(write(tmp_path, HEADER + text))
        assert "http(s) URL" in err.message
        assert err.location is not None
        assert "services[0].url" in err.location

    def test_service_needs_url_or_bind_and_port(self, tmp_path: Path) -> None:
        """An http service with neither a URL nor bind and port is refused by the schema."""
        err = load_error(write(tmp_path, HEADER + "services:\n  - name: app\n    kind: http\n"))
        assert err.location is not None
        assert "services" in err.location


class TestVariableDefaults:
    """A variable's default may be built from variables declared before it."""

    VARS = "variables:\n  host: {default: 127.0.0.1}\n  port: {default: 8000}\n"

    def test_default_refers_to_earlier_variables(self, tmp_path: Path) -> None:
        """``http://${host}:${port}`` follows an override of either."""
        text = self.VARS + "  url: {default: 'http://${host}:${port}'}\n" + ONE_SERVICE + "    url: ${url}\n"
        path = write(tmp_path, HEADER + text)
        assert load_profile(str(path)).service("app").url == "http://127.0.0.1:8000"
        assert load_profile(str(path), {"port": "9000"}).service("app").url == "http://127.0.0.1:9000"
        assert load_profile(str(path), {"url": "https://x.test"}).service("app").url == "https://x.test"

    def test_default_cannot_refer_to_a_later_variable(self, tmp_path: Path) -> None:
        """Defaults resolve in declaration order; a forward reference is named at the default's line."""
        text = "variables:\n  url: {default: 'http://${host}'}\n  host: {default: x}\n" + ONE_SERVICE
        err = load_error(write(tmp_path, HEADER + text))
        assert "${host}" in err.message
        assert err.location is not None
        assert "variables.url.default" in err.location


class TestCaFile:
    """probe.caFile names extra CA certificates for HTTPS probes."""

    def test_missing_ca_file_is_refused(self, tmp_path: Path) -> None:
        """A CA file that does not exist is a configuration error at probe.caFile."""
        text = f"probe:\n  caFile: {tmp_path / 'nope.pem'}\n" + ONE_SERVICE
        err = load_error(write(tmp_path, HEADER + text))
        assert "no CA certificate file" in err.message
        assert err.location is not None
        assert "probe.caFile" in err.location

    def test_empty_ca_file_means_system_cas(self, tmp_path: Path) -> None:
        """An empty value (the built-in profiles' default) trusts only the system's CAs."""
        text = "variables:\n  ca: {default: ''}\nprobe:\n  caFile: ${ca}\n" + ONE_SERVICE
        assert load_profile(str(write(tmp_path, HEADER + text))).probe.ca_file is None


class TestContainerRuntime:
    """Whether a container runtime is forbidden on the host is the profile's to say."""

    def test_oroboros_forbids_nooterra_allows(self) -> None:
        """Oroboros runs host processes under systemd; Nooterra self-host runs on Docker Compose."""
        assert load_profile("oroboros").container_runtime == "forbidden"
        assert load_profile("nooterra").container_runtime == "allowed"

    def test_unknown_value_is_refused(self, tmp_path: Path) -> None:
        """Only forbidden or allowed; the error names the field."""
        err = load_error(write(tmp_path, HEADER + "containerRuntime: maybe\n" + ONE_SERVICE))
        assert err.location is not None
        assert "containerRuntime" in err.location

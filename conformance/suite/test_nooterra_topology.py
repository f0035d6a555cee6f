"""Nooterra self-host topology bundle: the compose topology and env example carry the self-host contract."""

from __future__ import annotations

from conformance import nooterra as rules
from conformance.checks import check
from conformance.nooterra import FileRead
from conformance.profile import Bundle
from conformance.suite._nooterra import bundle_with, conclude, read, text

_PRESENT = "selfhost.compose.present[bundle]"


@check(
    "selfhost.compose.present",
    title="The self-host compose topology exists and is readable",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation="Ship the compose topology (deploy/compose/nooterra-self-host.topology.yml) where the profile's "
    "bundle.compose points.",
)
def test_compose_present(target: Bundle, obs: FileRead) -> None:
    """The compose topology can be read."""
    conclude(rules.compose_topology_present(obs), expected="a readable compose topology")


@check(
    "selfhost.compose.services_declared",
    title="The compose topology declares every self-host service",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation="Declare every service of the self-host topology under services: (postgres, minio, minio-init, api, "
    "maintenance, magic-link, x402-upstream-mock, x402-gateway).",
)
def test_services_declared(target: Bundle, obs: FileRead) -> None:
    """Every required service is declared under the top-level services key."""
    conclude(rules.required_services_declared(text(obs, _PRESENT)), expected=list(rules.REQUIRED_SERVICES))


@check(
    "selfhost.compose.evidence_store_wired",
    title="The API stores evidence in the S3 evidence store",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation='Set PROXY_EVIDENCE_STORE: "s3" and the PROXY_EVIDENCE_S3_* endpoint, bucket and credentials '
    "on the api service.",
)
def test_evidence_store_wired(target: Bundle, obs: FileRead) -> None:
    """The api service's evidence store env mappings are all present."""
    conclude(
        rules.api_evidence_store_wiring_present(text(obs, _PRESENT)), expected="S3 evidence store wiring"
    )


@check(
    "selfhost.compose.gateway_key_fail_closed",
    title="The x402 gateway's API key is required at deploy time",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation='Set NOOTERRA_API_KEY: "${NOOTERRA_GATEWAY_API_KEY:?...}" on x402-gateway, so a missing key '
    "stops the deployment instead of starting an unauthenticated gateway.",
)
def test_gateway_key_fail_closed(target: Bundle, obs: FileRead) -> None:
    """The gateway key uses fail-closed substitution."""
    conclude(
        rules.x402_gateway_api_key_fail_closed(text(obs, _PRESENT)),
        expected="NOOTERRA_API_KEY from ${NOOTERRA_GATEWAY_API_KEY:?}",
    )


@check(
    "selfhost.compose.magic_link_bound",
    title="Magic Link is bound to the API with a required ops token",
    targets=bundle_with("compose"),
    observe=read("compose"),
    remediation='Set MAGIC_LINK_NOOTERRA_API_BASE_URL and MAGIC_LINK_NOOTERRA_OPS_TOKEN: "${NOOTERRA_OPS_TOKEN:?...}" '
    "on magic-link.",
)
def test_magic_link_bound(target: Bundle, obs: FileRead) -> None:
    """Magic Link knows the API and takes the ops token fail-closed."""
    conclude(
        rules.magic_link_nooterra_binding_present(text(obs, _PRESENT)),
        expected="API base URL and ${NOOTERRA_OPS_TOKEN:?} binding",
    )


@check(
    "selfhost.env_example.required_keys",
    title="The env example declares every required key",
    targets=bundle_with("envExample"),
    observe=read("envExample"),
    remediation="Declare the missing keys (KEY=placeholder) in the env example operators copy to .env.selfhost.",
)
def test_env_example_required_keys(target: Bundle, obs: FileRead) -> None:
    """The env example exists and assigns every required key."""
    conclude(rules.env_example_required_keys_present(obs), expected=list(rules.REQUIRED_ENV_EXAMPLE_KEYS))

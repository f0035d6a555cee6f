"""The conformance checks: one module per domain, each check a pytest test."""

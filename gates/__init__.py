"""gates: certify a live deployment against its profile and write gate reports."""

__version__ = "0.1.0"

"""Headwater: a workflow-orchestrated data platform on Prefect 3."""

__version__ = "0.1.0"

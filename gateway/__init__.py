"""Databricks Gateway: a localhost sidecar exposing Databricks to Node through the Python SDK."""

__version__ = "0.1.0"

"""Example user elements for pipelines/user/*.yaml (see ../README.md)."""

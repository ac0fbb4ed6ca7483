"""Mechanisms the elements and ports share, each once, each with its own unit test."""

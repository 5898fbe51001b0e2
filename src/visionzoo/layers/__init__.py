"""Shared building blocks, each written once and composed by the families in `models/`."""

"""Gridwatch dispatch."""

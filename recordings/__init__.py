"""Gridwatch recordings."""

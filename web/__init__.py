"""Gridwatch web."""

"""Gridwatch media."""

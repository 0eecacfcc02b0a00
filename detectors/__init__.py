"""Gridwatch detectors."""

"""Gridwatch signaling."""

"""Engines the cloud gateway delegates generation to (see cloud.backends.base)."""

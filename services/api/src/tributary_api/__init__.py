"""Tributary."""

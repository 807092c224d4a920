"""Drivers: one package per hardware family, each implementing the HAL (see hal/registry.py)."""

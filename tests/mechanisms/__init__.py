"""Leak mechanisms and look-alikes served by real Flask and FastAPI apps, one route each."""

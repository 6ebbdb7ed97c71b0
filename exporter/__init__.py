"""Prometheus exporter for SignalWire Video room sessions."""

__version__ = "0.1.0"

"""Test support: the fake SignalWire API the tests and benchmarks run against."""

"""Benchmarks for healthdi, measured side by side with its peers in one process."""

"""Workloads over the public API: scenario files, the fuzzer, the bug catalog runner."""

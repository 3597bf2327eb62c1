"""Differential tests: the same scenarios against LocalTriton and a real tritonserver."""

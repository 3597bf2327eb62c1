"""Unit tests of the fake pb_utils module and of LocalTriton."""

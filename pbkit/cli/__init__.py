"""The ``pbkit`` command line."""

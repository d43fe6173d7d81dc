"""The ``autoforge`` command line."""

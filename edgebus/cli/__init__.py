"""The ``edgebus`` command line."""

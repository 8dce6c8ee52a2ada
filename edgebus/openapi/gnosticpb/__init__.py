"""gnostic's ``openapi.v2`` messages as edgebus serves them: ``openapiv2.proto`` and the
Python module generated from it at setup (``openapiv2_pb2.py``; see :mod:`edgebus.protogen`)."""

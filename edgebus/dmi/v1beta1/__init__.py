"""KubeEdge's DMI v1beta1: ``api.proto`` and the Python stubs generated from it at setup
(``api_pb2.py``, ``api_pb2_grpc.py``; see :mod:`edgebus.protogen`)."""

"""Python client of the jacolbert search cluster: `from jacolbert import Client`.

The generated gRPC stubs are `jacolbert.v1.jacolbert_pb2` (messages) and
`jacolbert.v1.jacolbert_pb2_grpc` (stubs), for anything the client does not wrap.
"""
from jacolbert.client import Client, Document, Hit, JacolbertError, Match, SearchResult, Stats

__all__ = ["Client", "Document", "Hit", "JacolbertError", "Match", "SearchResult", "Stats"]

"""A small typed client of the router's public `jacolbert.v1.Search` service.

Errors come as `JacolbertError`, carrying the gRPC status code and the router's message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import grpc
from google.protobuf import json_format

from jacolbert.v1 import jacolbert_pb2 as pb
from jacolbert.v1 import jacolbert_pb2_grpc as rpc

# The router's own limit on answers is 64 MiB; hits with text can be large.
_MAX_MESSAGE = 64 << 20


class JacolbertError(Exception):
    """A call the router refused or could not answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass
class Document:
    id: str
    text: str = ""
    # The document's metadata object (None when it has none or it was not asked for).
    metadata: Optional[dict] = None

    def _to_pb(self) -> pb.Document:
        metadata = "" if self.metadata is None else json.dumps(self.metadata, ensure_ascii=False)
        return pb.Document(id=self.id, text=self.text, metadata=metadata)

    @staticmethod
    def _from_pb(d: pb.Document) -> "Document":
        return Document(id=d.id, text=d.text, metadata=json.loads(d.metadata) if d.metadata else None)


@dataclass
class Match:
    """One query token and the document token that matched it best (`explain=True`). Spans are
    `(start, end)` character indices (`text[start:end]`) of the text as given; None for [CLS],
    markers, [SEP] and expansion."""

    query_token: int
    query_text: str
    query_span: Optional[tuple[int, int]]
    # A [MASK] the query was padded with, not one of its words.
    expansion: bool
    document_token: int
    document_text: str
    span: Optional[tuple[int, int]]
    similarity: float

    @staticmethod
    def _from_pb(m: pb.TokenMatch) -> "Match":
        def span(field: str, s: pb.Span) -> Optional[tuple[int, int]]:
            return (s.start, s.end) if m.HasField(field) else None

        return Match(
            query_token=m.query_token,
            query_text=m.query_text,
            query_span=span("query_span", m.query_span),
            expansion=m.expansion,
            document_token=m.document_token,
            document_text=m.document_text,
            span=span("span", m.span),
            similarity=m.similarity,
        )


@dataclass
class Hit:
    id: str
    score: float
    shard: int
    text: str = ""
    metadata: Optional[dict] = None
    # With `explain=True`: per query token, in order, what matched it (similarities sum to score).
    matches: list[Match] = field(default_factory=list)


@dataclass
class SearchResult:
    hits: list[Hit]
    # True when some shards failed and the answer comes from the others (see `failures`).
    partial: bool
    shards_ok: int
    shards_total: int
    took_ms: float
    failures: list[dict] = field(default_factory=list)


@dataclass
class Stats:
    documents: int
    tokens: int
    shards_ok: int
    # Per shard: documents, tokens, trained, memory_bytes, disk_bytes, ...
    shards: list[dict] = field(default_factory=list)


DocumentLike = Union[Document, Mapping[str, Any]]
FilterLike = Union[pb.Filter, Mapping[str, Any], None]


def _document(d: DocumentLike) -> Document:
    if isinstance(d, Document):
        return d
    return Document(id=str(d["id"]), text=d.get("text", ""), metadata=d.get("metadata"))


def _filter(f: FilterLike) -> Optional[pb.Filter]:
    """A `pb.Filter`, or a dict in its proto3 JSON form, e.g.
    {"must": [{"match": {"field": "lang", "any": [{"keyword": "ja"}]}}]}."""
    if f is None or isinstance(f, pb.Filter):
        return f
    return json_format.ParseDict(f, pb.Filter())


class Client:
    """`Client("127.0.0.1:50051")`; `api_key` for a router that checks keys, `ca` (PEM path or
    bytes) for one that serves TLS, with `cert` and `key` when it asks for a client certificate.
    `timeout` is each call's deadline in seconds."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        api_key: Optional[str] = None,
        ca: Union[str, bytes, None] = None,
        cert: Union[str, bytes, None] = None,
        key: Union[str, bytes, None] = None,
        timeout: float = 10.0,
    ):
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)]
        if ca is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(ca), private_key=_pem(key), certificate_chain=_pem(cert)
            )
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = rpc.SearchStub(self._channel)
        self._metadata = [("authorization", f"Bearer {api_key}")] if api_key else None
        self.timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, timeout: Optional[float]) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise JacolbertError(e.code(), e.details() or "") from None

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        filter: FilterLike = None,
        text: bool = True,
        metadata: bool = False,
        allow_partial: Optional[bool] = None,
        explain: bool = False,
        timeout: Optional[float] = None,
    ) -> SearchResult:
        """The `k` best documents for `query`; hits carry their text (and metadata if asked), and
        with `explain` which document token matched each query token (`Hit.matches`)."""
        request = self._request(query, k, filter, text, metadata, allow_partial, explain)
        return _result(self._call("Search", request, timeout))

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        filter: FilterLike = None,
        text: bool = True,
        metadata: bool = False,
        explain: bool = False,
        timeout: Optional[float] = None,
    ) -> list[SearchResult]:
        """Several searches in one call, answered concurrently, in order."""
        requests = [self._request(q, k, filter, text, metadata, None, explain) for q in queries]
        answer = self._call("SearchBatch", pb.SearchBatchRequest(requests=requests), timeout)
        return [_result(r) for r in answer.responses]

    def upsert(self, documents: Iterable[DocumentLike], *, timeout: Optional[float] = None) -> tuple[int, int]:
        """Writes documents (replacing those with the same id); returns (written, replaced)."""
        request = pb.UpsertRequest(documents=[_document(d)._to_pb() for d in documents])
        answer = self._call("Upsert", request, timeout)
        return answer.written, answer.replaced

    def delete(self, ids: Iterable[str] = (), *, filter: FilterLike = None, timeout: Optional[float] = None) -> int:
        """Deletes these ids (and what `filter` matches); returns how many were deleted."""
        return self._call("Delete", pb.DeleteRequest(ids=list(ids), filter=_filter(filter)), timeout).deleted

    def get(self, ids: Iterable[str], *, timeout: Optional[float] = None) -> tuple[list[Document], list[str]]:
        """The documents of `ids` that exist, in order, and the ids that do not."""
        answer = self._call("Get", pb.GetRequest(ids=list(ids)), timeout)
        return [Document._from_pb(d) for d in answer.documents], list(answer.missing)

    def rerank(self, query: str, texts: Sequence[str], *, timeout: Optional[float] = None) -> list[float]:
        """Exact MaxSim of `query` against each text, in order (no index involved)."""
        return list(self._call("Rerank", pb.RerankRequest(query=query, texts=list(texts)), timeout).scores)

    def rerank_explained(
        self, query: str, texts: Sequence[str], *, timeout: Optional[float] = None
    ) -> list[tuple[float, list[Match]]]:
        """`rerank` with, for each text, what matched each query token."""
        answer = self._call("Rerank", pb.RerankRequest(query=query, texts=list(texts), explain=True), timeout)
        return [(s, [Match._from_pb(m) for m in e.matches]) for s, e in zip(answer.scores, answer.explanations)]

    def stats(self, *, timeout: Optional[float] = None) -> Stats:
        answer = self._call("Stats", pb.ClusterStatsRequest(), timeout)
        shards = [json_format.MessageToDict(s, preserving_proto_field_name=True) for s in answer.shards]
        return Stats(documents=answer.documents, tokens=answer.tokens, shards_ok=answer.shards_ok, shards=shards)

    @staticmethod
    def _request(
        query: str,
        k: int,
        filter: FilterLike,
        text: bool,
        metadata: bool,
        allow_partial: Optional[bool],
        explain: bool,
    ) -> pb.SearchRequest:
        request = pb.SearchRequest(
            query=query,
            k=k,
            include=pb.Include(text=text, metadata=metadata),
            filter=_filter(filter),
            explain=explain,
        )
        if allow_partial is not None:
            request.allow_partial = allow_partial
        return request


def _result(r: pb.SearchResponse) -> SearchResult:
    hits = [
        Hit(
            id=h.id,
            score=h.score,
            shard=h.shard,
            text=h.document.text,
            metadata=json.loads(h.document.metadata) if h.document.metadata else None,
            matches=[Match._from_pb(m) for m in h.explanation.matches],
        )
        for h in r.hits
    ]
    failures = [json_format.MessageToDict(f, preserving_proto_field_name=True) for f in r.failures]
    return SearchResult(
        hits=hits,
        partial=r.partial,
        shards_ok=r.shards_ok,
        shards_total=r.shards_total,
        took_ms=r.took_micros / 1e3,
        failures=failures,
    )


def _pem(value: Union[str, bytes, None]) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()

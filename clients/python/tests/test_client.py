"""The Python client against a real, empty cluster: `python test_client.py ROUTER_ADDRESS`.
Run by tests/python_client.rs (in the test command) with the package installed in a venv;
exits non-zero on the first check that fails, and prints what it checked."""
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from jacolbert import Client, Document, JacolbertError

ROUTER_SERVICES = {
    "jacolbert.v1.Search",
    "jacolbert.v1.Admin",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def main(address: str) -> None:
    checked = 0

    def check(ok: bool, what: str) -> None:
        nonlocal checked
        if not ok:
            raise AssertionError(what)
        checked += 1

    with Client(address, timeout=30.0) as c:
        check(c.stats().documents == 0, "the cluster starts empty")
        written, replaced = c.upsert(
            [
                {"id": "fuji", "text": "富士山は日本一高い山である。", "metadata": {"lang": "ja", "year": 2020}},
                Document("biwa", "琵琶湖は日本一大きい湖である。", {"lang": "ja", "year": 2021}),
                {"id": "nile", "text": "ナイル川は長い川である。", "metadata": {"lang": "en"}},
            ]
        )
        check((written, replaced) == (3, 0), f"upsert wrote {written}, replaced {replaced}")
        found = c.search("富士山", k=3, metadata=True)
        check(not found.partial and found.shards_ok == found.shards_total, "a whole answer")
        check([h.id for h in found.hits][:1] == ["fuji"], f"富士山 finds fuji first: {found.hits}")
        check(found.hits[0].text == "富士山は日本一高い山である。", "hits carry their text")
        check(found.hits[0].metadata == {"lang": "ja", "year": 2020}, "and their metadata")
        check(all(a.score >= b.score for a, b in zip(found.hits, found.hits[1:])), "hits by score")
        only_en = c.search("川", k=3, filter={"must": [{"match": {"field": "lang", "any": [{"keyword": "en"}]}}]})
        check([h.id for h in only_en.hits] == ["nile"], f"a filter on metadata: {only_en.hits}")
        batch = c.search_batch(["富士山", "琵琶湖"], k=1)
        check([r.hits[0].id for r in batch] == ["fuji", "biwa"], "search_batch answers in order")
        docs, missing = c.get(["biwa", "nothing"])
        check([d.id for d in docs] == ["biwa"] and missing == ["nothing"], "get: found and missing")
        check(docs[0].metadata == {"lang": "ja", "year": 2021}, "get returns the metadata object")
        # Rerank scores the texts exactly, as the search scored the stored ones (f16 originals).
        scores = c.rerank("富士山", ["富士山は日本一高い山である。", "琵琶湖は日本一大きい湖である。"])
        check(len(scores) == 2 and scores[0] > scores[1], f"rerank puts fuji first too: {scores}")
        check(abs(scores[0] - found.hits[0].score) < 0.05, f"rerank {scores[0]} vs search {found.hits[0].score}")
        # Explained: per query token what matched; the matched words' spans are in the text.
        fuji = c.search("富士山", k=1, text=False, explain=True).hits[0]
        check(fuji.text == "" and len(fuji.matches) == 32, f"explain without text: {len(fuji.matches)} matches")
        check(abs(sum(m.similarity for m in fuji.matches) - fuji.score) < 1e-3, "similarities sum to the score")
        worded = [m for m in fuji.matches if m.query_span and m.span]
        text = "富士山は日本一高い山である。"
        check(worded and all(text[m.span[0] : m.span[1]] for m in worded), f"spans in the text: {worded}")
        check(all(m.expansion == (m.query_text == "[MASK]") for m in fuji.matches), "expansion is the padding")
        (score, matches), _ = c.rerank_explained("富士山", [text, "琵琶湖は日本一大きい湖である。"])
        check(abs(sum(m.similarity for m in matches) - score) < 1e-3 and len(matches) == 32, "rerank explained")
        check(c.delete(["nile"]) == 1 and c.get(["nile"])[1] == ["nile"], "delete")
        check(c.stats().documents == 2, "stats after the delete")
        try:
            c.search("富士山", k=0)
            check(False, "k = 0 is refused")
        except JacolbertError as e:
            check(e.code == grpc.StatusCode.INVALID_ARGUMENT and "k" in e.message, f"k = 0: {e}")

    # A v1alpha reflection client (grpcio-reflection's) sees exactly the router's services.
    with grpc.insecure_channel(address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    check(services == ROUTER_SERVICES, f"v1alpha reflection lists {sorted(services)}")
    print(f"python client: {checked} checks passed against {address}")


if __name__ == "__main__":
    main(sys.argv[1])

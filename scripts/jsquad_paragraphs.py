#!/usr/bin/env python3
"""Writes the 1,145 JSQuAD validation paragraphs (JGLUE, CC BY-SA 4.0; tests/fixtures/README.md)
as `jacolbert index` lines, {"id", "text", "metadata": {"title"}}, to OUT_DIR/paragraphs.jsonl,
and four of its questions, one per line, to OUT_DIR/questions.txt.

Usage: scripts/jsquad_paragraphs.py OUT_DIR
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    out_dir = sys.argv[1]
    path = os.path.join(ROOT, "tests/fixtures/jsquad/jsquad-valid-v1.1.json")
    data = json.load(open(path, encoding="utf-8"))
    with open(os.path.join(out_dir, "paragraphs.jsonl"), "w", encoding="utf-8") as out:
        for article in data["data"]:
            for i, p in enumerate(article["paragraphs"]):
                text = p["context"].split(" [SEP] ", 1)[-1]  # drop the "title [SEP] " headline
                line = {"id": f"{article['title']}-{i}", "text": text, "metadata": {"title": article["title"]}}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    questions = [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
    with open(os.path.join(out_dir, "questions.txt"), "w", encoding="utf-8") as out:
        out.write("\n".join(questions[:: len(questions) // 4][:4]) + "\n")


if __name__ == "__main__":
    main()

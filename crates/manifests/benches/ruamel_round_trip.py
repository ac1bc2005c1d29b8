"""The peer of the checkout bench's edits: the original Flux's way of
editing a manifest, a ruamel.yaml round trip (load every document, set the
values, dump every document back).

Reads a JSON plan on stdin: a list of {"file": path, "edits": [{"doc": n,
"path": [key or index, ...], "value": text}, ...]}. Writes each file back,
then prints one JSON line: the seconds spent loading, editing and dumping
(without the interpreter's start and the import), and the files it could not
round-trip, with why.
"""

import json
import sys
import time

from ruamel.yaml import YAML


def main():
    plan = json.load(sys.stdin)
    yaml = YAML()
    yaml.preserve_quotes = True
    start = time.perf_counter()
    failed = []
    for entry in plan:
        path = entry["file"]
        try:
            with open(path, encoding="utf-8") as f:
                docs = list(yaml.load_all(f))
            for edit in entry["edits"]:
                node = docs[edit["doc"]]
                *steps, last = edit["path"]
                for step in steps:
                    node = node[step]
                node[last] = edit["value"]
            with open(path, "w", encoding="utf-8") as f:
                yaml.dump_all(docs, f)
        except Exception as error:  # the bench reports it and goes on
            failed.append(f"{path}: {type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "failed": failed}))


if __name__ == "__main__":
    main()

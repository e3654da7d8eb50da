"""The peer for SPEC §8's first-apply target: the same keys written with raw batched etcd
transactions from Python, parsing included (CSafeLoader, flatten, json.dumps, 128 puts per txn).

    python benchmarks/raw_apply.py REPO ENDPOINT PREFIX
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyetcd
import yaml
from pyetcd import etcdrpc


def flatten(node: dict, prefix: str, out: dict) -> None:
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            flatten(v, key, out)
        else:
            out[key] = v


def main() -> None:
    repo, endpoint, prefix = Path(sys.argv[1]), sys.argv[2], sys.argv[3].rstrip("/")
    host, port = endpoint.rsplit(":", 1)
    client = pyetcd.client(host, int(port))
    ops = []
    n = 0
    for f in sorted(repo.glob("*/*.yaml")):
        if f.name.startswith("_"):
            continue
        flat: dict = {}
        flatten(yaml.load(f.read_text(), Loader=yaml.CSafeLoader) or {}, "", flat)
        base = f"{prefix}/{f.parent.name}/{f.stem}/"
        for k, v in flat.items():
            ops.append(etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                key=(base + k).encode(), value=json.dumps(v, default=str).encode())))
            if len(ops) == 128:
                client.kvstub.Txn(etcdrpc.TxnRequest(success=ops), 30)
                n += len(ops)
                ops = []
    if ops:
        client.kvstub.Txn(etcdrpc.TxnRequest(success=ops), 30)
        n += len(ops)
    print(n)


if __name__ == "__main__":
    main()

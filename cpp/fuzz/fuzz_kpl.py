"""Fuzzes KPL de-aggregation (python/recserve/ingest/kpl.py) with atheris, libFuzzer's engine for
Python: the decoder is pure Python, so this is the one harness of cpp/fuzz not in C++.

    python fuzz_kpl.py [libFuzzer flags] [corpus dirs]    fuzz (as the C++ harnesses)
    python fuzz_kpl.py --make-corpus DIR                   write the seed corpus with aggregate()

Each input is de-aggregated as it is, then, if it has the magic, again with its MD5 recomputed so
mutations reach the protobuf reader. A blob is read whole or refused with KplError, never any
other exception; what is read aggregates back to the same user records.
"""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _import_kpl() -> types.ModuleType:
    # recserve/__init__.py imports the compiled extension; kpl.py needs none of it. A bare
    # package module with the right __path__ lets `import recserve.ingest.kpl` run alone.
    package = types.ModuleType("recserve")
    package.__path__ = [str(ROOT / "python" / "recserve")]
    sys.modules.setdefault("recserve", package)
    import recserve.ingest.kpl as kpl

    return kpl


def _seeds(kpl: types.ModuleType) -> dict[str, bytes]:
    agg = kpl.aggregate
    one = agg([("partition_key", b"data")])
    three = agg([("u1", b'{"type": "watch"}'), ("u2", b"\x00\x01"), ("u1", b"x", "123")])
    binary_event = bytes([0xB1, 1, 7, 0]) + bytes(range(40))
    return {
        "one_record.kpl": one,
        "three_records_hash_keys.kpl": three,
        "unicode_keys.kpl": agg([("ключ", b"\xff" * 9, "340282366920938463463374607431768211455"), ("k", b"")]),
        "binary_events.kpl": agg([(f"user-{i}", binary_event) for i in range(8)]),
        "no_records.kpl": kpl.MAGIC + hashlib.md5(b"").digest(),
        "bad_md5.kpl": one[:-1] + bytes([one[-1] ^ 1]),
        "magic_only": kpl.MAGIC,
        "not_aggregated.json": b'{"event_id": "e1"}',
    }


def make_corpus(directory: Path) -> None:
    out = directory / "kpl"
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in _seeds(_import_kpl()).items():
        (out / name).write_bytes(blob)


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["recserve"]):
        kpl = _import_kpl()

    def check(blob: bytes) -> None:
        try:
            records = kpl.deaggregate(blob)
        except kpl.KplError:
            return
        assert kpl.is_aggregated(blob)
        assert [r.sub_sequence for r in records] == list(range(len(records)))
        for r in records:
            assert isinstance(r.partition_key, str) and isinstance(r.data, bytes)
            assert r.explicit_hash_key is None or isinstance(r.explicit_hash_key, str)
        if records:
            again = kpl.deaggregate(
                kpl.aggregate([(r.partition_key, r.data, r.explicit_hash_key) for r in records])
            )
            assert again == records, (again, records)

    def test_one_input(data: bytes) -> None:
        check(data)
        if kpl.is_aggregated(data):
            message = data[len(kpl.MAGIC) : -16]
            fixed = data[: len(kpl.MAGIC)] + message + hashlib.md5(message).digest()
            if fixed != data:
                check(fixed)

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(Path(sys.argv[2]))
    else:
        main()

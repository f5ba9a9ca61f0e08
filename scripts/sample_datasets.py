"""Write the small sample datasets shipped in examples/data/ from the full dev sets.

    .venv/bin/python scripts/sample_datasets.py --source DIR

``DIR`` holds ``guardrails/injection_dev.jsonl`` and ``pii/pii_dev.json`` (built from the MIT
sources listed in examples/data/README.md). Reproducible: fixed seed, rows kept in their source
order, so two runs write identical files.

* ``injection_sample.jsonl``: 100 rows, 40 attacks (30 CyberSecEval prompt_injection, 10 Giskard)
  and 60 benign (30 PIGuard wildguard, 30 CyberSecEval mitre_frr hard negatives);
* ``pii_sample.json``: 100 sentences, 60 with at least one entity the ``pii`` guard detects and
  40 without (they hold names, addresses and the like, or nothing).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from tether.config.guards import PII_TYPES

OUT = Path(__file__).resolve().parents[1] / "examples" / "data"
SEED = 0
INJECTION_QUOTAS = {
    (1, "CyberSecEval/prompt_injection.json"): 30,
    (1, "Giskard/prompt_injections.csv"): 10,
    (0, "PIGuard/wildguard.json"): 30,
    (0, "CyberSecEval/mitre_frr.json"): 30,
}
PII_WITH, PII_WITHOUT = 60, 40


def pick(rng: random.Random, indices: list[int], k: int) -> list[int]:
    if len(indices) < k:
        raise SystemExit(f"the source has {len(indices)} rows for a quota of {k}")
    return rng.sample(indices, k)


def injection_sample(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    chosen: list[int] = []
    for (label, source), k in INJECTION_QUOTAS.items():
        pool = [i for i, r in enumerate(rows) if r["label"] == label and r["source"] == source]
        chosen += pick(rng, pool, k)
    return [rows[i] for i in sorted(chosen)]


def pii_sample(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    detected = [
        i for i, r in enumerate(rows) if any(s["entity_type"] in PII_TYPES for s in r["spans"])
    ]
    others = [i for i in range(len(rows)) if i not in set(detected)]
    chosen = pick(rng, detected, PII_WITH) + pick(rng, others, PII_WITHOUT)
    return [rows[i] for i in sorted(chosen)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of the full dev sets")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    source: Path = args.source
    injection_rows = [
        json.loads(line)
        for line in (source / "guardrails" / "injection_dev.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    pii_rows = json.loads((source / "pii" / "pii_dev.json").read_text("utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "injection_sample.jsonl").open("w", encoding="utf-8") as f:
        for row in injection_sample(injection_rows):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    pii = json.dumps(pii_sample(pii_rows), ensure_ascii=False, indent=1)
    (args.out / "pii_sample.json").write_text(pii + "\n", encoding="utf-8")
    print(f"wrote {args.out}/injection_sample.jsonl and {args.out}/pii_sample.json")


if __name__ == "__main__":
    main()

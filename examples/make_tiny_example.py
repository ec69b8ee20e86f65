"""Build the tiny policy and arithmetic prompts that examples/tiny_local.yaml trains on.

    python examples/make_tiny_example.py examples/tiny
"""

import json
import os
import random
import sys

from lco.tasks import build_byte_tokenizer, build_tiny_causal_lm


def main(out: str) -> None:
    tokenizer = build_byte_tokenizer()
    model = build_tiny_causal_lm(tokenizer, hidden_size=64, num_layers=2)
    model.save_pretrained(os.path.join(out, "policy"))
    tokenizer.save_pretrained(os.path.join(out, "policy"))
    rng = random.Random(0)
    with open(os.path.join(out, "train.jsonl"), "w") as f:
        for _ in range(256):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            f.write(json.dumps({"prompt": f"{a}+{b}=", "answer": str(a + b)}) + "\n")
    print(f"wrote {out}/policy and {out}/train.jsonl")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/tiny")

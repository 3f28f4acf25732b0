"""Trains the byte-level BPE on the training split and writes tokenizer.json.

usage: python3 train_tokenizer.py DATA_DIR/train.txt REFERENCE_TOKENIZER_JSON OUT_TOKENIZER_JSON [VOCAB_SIZE]
"""
import json
import sys
import time

import bpe


def main():
    train_path, ref_path, out_path = sys.argv[1:4]
    vocab_size = int(sys.argv[4]) if len(sys.argv) > 4 else 8192
    ref = bpe.load_reference(ref_path)
    n_tail = len(ref["added_tokens"]) - 3
    n_merges = vocab_size - 3 - 256 - n_tail
    with open(train_path, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line]
    lines = [line + "\n" for line in lines]
    t0 = time.time()
    merges = bpe.train(lines, n_merges)
    print(f"{len(merges)} merges in {time.time() - t0:.0f} s")
    tok = bpe.build_tokenizer_json(merges, vocab_size)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()

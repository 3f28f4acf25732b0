"""Encodes train.txt and heldout.txt with tokenizer.json into uint16 token files (no BOS; the whole file is one
string, so line breaks are tokens too). usage: python3 encode_data.py TOKENIZER_JSON DATA_DIR"""
import json
import os
import sys

from array import array

import bpe


def main():
    tok_path, data = sys.argv[1], sys.argv[2]
    bpe.load_reference(tok_path)  # the pre-tokenizer regexes are the same in every file of this kind
    with open(tok_path, encoding="utf-8") as f:
        enc = bpe.Encoder(json.load(f))
    for split in ("heldout", "train"):
        with open(os.path.join(data, f"{split}.txt"), encoding="utf-8") as f:
            text = f.read()
        ids = array("H", enc.encode(text))  # uint16, native (little-endian) order
        assert enc.decode(ids.tolist()) == text, "decode(encode(text)) != text"
        with open(os.path.join(data, f"{split}.u16"), "wb") as f:
            ids.tofile(f)
        print(f"{split}: {len(text.encode())} bytes -> {len(ids)} tokens")


if __name__ == "__main__":
    main()

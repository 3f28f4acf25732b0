"""Checks with the Hugging Face `tokenizers` library that tokenizer.json encodes the data exactly as encode_data.py
did, and that DeepSeek's special tokens are single added tokens. usage: python3 tok_check.py TOKENIZER_JSON DATA_DIR"""
import json
import os
import sys

import numpy as np
from tokenizers import Tokenizer


def main():
    path, data = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(path)
    ok = True
    for split in ("heldout", "train"):
        with open(os.path.join(data, f"{split}.txt"), encoding="utf-8") as f:
            text = f.read()
        ours = np.fromfile(os.path.join(data, f"{split}.u16"), dtype=np.uint16).astype(np.int64)
        hf = np.array(tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        same = len(hf) == len(ours) and bool((hf == ours).all())
        ok &= same
        print(f"{split}: tokenizers {len(hf)} ids, encode_data.py {len(ours)} ids, identical: {same}")
        ok &= tok.decode(hf.tolist(), skip_special_tokens=False) == text
    with open(path, encoding="utf-8") as f:
        added = json.load(f)["added_tokens"]
    for t in added:
        ids = tok.encode("x" + t["content"] + "y", add_special_tokens=False).ids
        if t["id"] not in ids:
            ok = False
            print("added token not matched:", t["content"])
    s = "<｜begin▁of▁sentence｜><｜User｜>Hello there<｜Assistant｜></think>Hi!<｜end▁of▁sentence｜>"
    print(s, "->", tok.encode(s, add_special_tokens=False).ids)
    print("TOKENIZER CHECK", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()

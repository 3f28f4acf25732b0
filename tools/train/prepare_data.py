"""Turns the nlp-corpus JSON files into one-sentence-per-line text files with a fixed held-out split."""
import json
import os
import sys

HELDOUT_DOCS = (0, 1)  # builds/doc-0.json and doc-1.json are never trained on
N_DOCS = 100


def clean(sentence):
    # one sentence per line: fold embedded line breaks and tabs into single spaces
    s = " ".join(sentence.replace("\r", " ").replace("\n", " ").replace("\t", " ").split(" "))
    while "  " in s:
        s = s.replace("  ", " ")
    return s.strip()


def main():
    src, dst = sys.argv[1], sys.argv[2]
    out = {"train": [], "heldout": []}
    for i in range(N_DOCS):
        with open(os.path.join(src, f"doc-{i}.json"), encoding="utf-8") as f:
            sentences = json.load(f)
        split = "heldout" if i in HELDOUT_DOCS else "train"
        for s in sentences:
            s = clean(s)
            if s:
                out[split].append(s)
    for split, lines in out.items():
        with open(os.path.join(dst, f"{split}.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{split}: {len(lines)} sentences")


if __name__ == "__main__":
    main()

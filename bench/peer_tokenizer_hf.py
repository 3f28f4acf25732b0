# The Hugging Face tokenizers library on the chunks bench_tokenizer writes (--write-corpus), one core.
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
d = sys.argv[2]
for name in ["prose", "code"]:
    chunks = json.load(open(f"{d}/{name}.json"))
    ref = json.load(open(f"{d}/{name}.ids.json"))
    nbytes = sum(len(c.encode()) for c in chunks)
    t0 = time.process_time()
    out = [tok.encode(c, add_special_tokens=False).ids for c in chunks]
    first = time.process_time() - t0
    same = sum(a == b for a, b in zip(out, ref))
    best = float("inf")
    for _ in range(7):
        t0 = time.process_time()
        for c in chunks:
            tok.encode(c, add_special_tokens=False)
        best = min(best, time.process_time() - t0)
    print(f"hf-tokenizers {name}: {nbytes} bytes, first pass {nbytes/first/1e6:.2f} MB/s, warm {nbytes/best/1e6:.2f} MB/s,"
          f" ids identical to dsinfer on {same}/{len(chunks)} chunks")

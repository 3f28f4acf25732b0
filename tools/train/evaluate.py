"""Re-evaluates an exported model on the CPU in float32 (loading it through the checkpoint reader):
- replays the golden cases of tests/data/tiny-en/golden.safetensors (mean KL, argmax agreement),
- held-out perplexity by the documented rule (BOS + 511 text tokens per window, non-overlapping).

usage: python3 evaluate.py MODEL_DIR HELDOUT_U16 [GOLDEN] [--windows N]
"""
import argparse
import json
import math

import numpy as np
import torch

import model as M
import quant as Q
import train as T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("heldout")
    ap.add_argument("golden", nargs="?")
    ap.add_argument("--windows", type=int, default=None)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--write-golden", default=None, help="write the golden cases computed here to this path")
    ap.add_argument("--json", default=None, help="write the held-out figures to this JSON file")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    m = M.from_pretrained(a.model).eval()
    ids = np.fromfile(a.heldout, dtype=np.uint16).astype(np.int64)
    if a.write_golden:
        T.write_goldens(m, ids, a.write_golden, "cpu")
    if a.golden:
        g = {k: v for k, (_, v) in Q.read_safetensors(a.golden).items()}
        for case in sorted({k.split(".")[0] for k in g}):
            t = torch.from_numpy(g[f"{case}.tokens"].astype(np.int64))[None]
            with torch.no_grad():
                logits, mtp = m(t, t[:, 1:])
            for name, ours in (("prefill", logits[0]), ("mtp", mtp[0])):
                gold = torch.log_softmax(torch.from_numpy(g[f"{case}.{name}.logits"].copy()).double(), -1)
                o = torch.log_softmax(ours.double(), -1)
                kl = (gold.exp() * (gold - o)).sum(-1).mean().item()
                ag = (gold.argmax(-1) == o.argmax(-1)).double().mean().item()
                print(f"golden {case}.{name}.logits: mean KL {kl:.2e}, argmax agreement {ag * 100:.1f}%", flush=True)
    if a.windows == 0:
        return
    nll, n, agree = T.evaluate(m, ids, a.window, "cpu", max_windows=a.windows)
    print(f"held-out: {n} tokens, mean NLL {nll:.6f}, perplexity {math.exp(nll):.4f}, MTP agreement {agree:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"window": a.window, "windows": len(T.heldout_windows(ids, a.window)[:a.windows]),
                       "tokens": n, "mean_nll": nll, "perplexity": math.exp(nll), "mtp_agreement": agree}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

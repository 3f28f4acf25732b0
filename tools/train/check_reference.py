"""Checks that this trainer's forward pass is DeepSeek-V4: loads tests/data/dsv4-tiny-flash (a random checkpoint
in the published format) and compares the prefill logits, per-layer hidden states and MTP logits with the
goldens computed by DeepSeek's reference code (fixtures README bars: mean KL <= 1e-2 and argmax >= 90% with
quantization; <= 2e-3 and >= 97% against golden-noquant with quantization off).

usage: python3 check_reference.py [FIXTURE_DIR]   (exit status 1 if a bar is missed)
"""
import os
import sys

import numpy as np
import torch

import model as M
import quant as Q


def kl_argmax(golden, ours):
    g = torch.log_softmax(torch.from_numpy(golden.copy()).double(), -1)
    o = torch.log_softmax(ours.double(), -1)
    kl = (g.exp() * (g - o)).sum(-1)
    agree = (g.argmax(-1) == o.argmax(-1)).double().mean()
    return kl.mean().item(), agree.item()


def rel_err(golden, ours):
    g = torch.from_numpy(golden.copy()).double().flatten(1)
    o = ours.double().flatten(1)
    return ((o - g).norm(dim=1) / g.norm(dim=1)).numpy()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../tests/data/dsv4-tiny-flash")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    m = M.from_pretrained(d).eval()
    ok = True
    for gname, quant, bar_kl, bar_arg in (("golden.safetensors", True, 1e-2, 0.90),
                                          ("golden-noquant.safetensors", False, 2e-3, 0.97)):
        gold = {k: v for k, (_, v) in Q.read_safetensors(os.path.join(d, gname)).items()}
        m.q.weights = quant  # the loaded weights are already on their grids; re-rounding must not move them
        m.q.acts = quant
        for case in ("long", "short"):
            toks = gold[f"{case}.tokens"]
            n = int(gold[f"{case}.prompt_len"][0])
            t = torch.from_numpy(toks[:n].astype(np.int64))[None]
            with torch.no_grad():
                logits, mtp, hidden = m(t, t[:, 1:], return_hidden=True)
            kl, ag = kl_argmax(gold[f"{case}.prefill.logits"], logits[0])
            good = kl <= bar_kl and ag >= bar_arg
            ok &= good
            print(f"{gname:28s} {case:5s} prefill logits: mean KL {kl:.3e}  argmax {ag * 100:.1f}%  "
                  f"{'ok' if good else 'FAIL'}")
            if f"{case}.mtp.logits" in gold:
                kl, ag = kl_argmax(gold[f"{case}.mtp.logits"], mtp[0])
                good = kl <= bar_kl and ag >= bar_arg
                ok &= good
                print(f"{gname:28s} {case:5s} mtp logits:     mean KL {kl:.3e}  argmax {ag * 100:.1f}%  "
                      f"{'ok' if good else 'FAIL'}")
            # layer by layer: layer i fed the golden output of layer i-1 (bar: median <= 1e-5, 85% <= 1e-3)
            for i, layer in enumerate(m.layers):
                k = f"{case}.prefill.hidden.{i}"
                if k not in gold:
                    continue
                with torch.no_grad():
                    if i == 0:
                        x = m.embed_tokens(t).unsqueeze(2).expand(-1, -1, m.cfg.hc_mult, -1)
                    else:
                        x = torch.from_numpy(gold[f"{case}.prefill.hidden.{i - 1}"].copy())[None]
                    e = rel_err(gold[k], layer(x, t)[0])
                good = np.median(e) <= 1e-5 and (e <= 1e-3).mean() >= 0.85
                ok &= good
                print(f"{gname:28s} {case:5s} layer {i} (ratio {m.cfg.compress_ratios[i]:3d}) rel. L2 error: "
                      f"median {np.median(e):.2e}  <=1e-3 at {(e <= 1e-3).mean() * 100:.1f}% of positions  "
                      f"{'ok' if good else 'FAIL'}")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

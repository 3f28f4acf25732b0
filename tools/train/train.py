"""Trains the model for a fixed wall-clock budget, then evaluates it and exports it in the published format.

usage: python3 train.py --data DIR --tokenizer tokenizer.json --out DIR [--minutes M] [--batch B] [--seq T]

DIR holds train.u16 / heldout.u16 (encode_data.py). Training windows are BOS followed by seq text tokens taken
at random offsets of the training token stream (the sentence-per-line text with its line breaks). Loss:
cross-entropy of the main head + 0.3 x the MTP head's next-next-token cross-entropy + the indexers' KL to their
attention (which only the indexers receive). Gate biases of the non-hash layers follow the auxiliary-loss-free
rule (bias += 1e-3 * sign(mean load - load) after each step). Everything is seeded.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import export as X
import model as M

BOS = 0


def heldout_windows(ids, window):
    """The evaluation rule: non-overlapping chunks of window-1 text tokens, each preceded by BOS; every text token
    is predicted once (the last chunk may be shorter)."""
    n = window - 1
    return [np.concatenate([[BOS], ids[i:i + n]]).astype(np.int64) for i in range(0, len(ids), n)]


@torch.no_grad()
def evaluate(model, ids, window, device, max_windows=None):
    """-> (mean NLL per text token, token count, MTP agreement with the main model's greedy next-next token)"""
    model.eval()
    wins = heldout_windows(ids, window)
    if max_windows:
        wins = wins[:max_windows]
    nll, count, agree, agree_n = 0.0, 0, 0, 0
    for w in wins:
        t = torch.from_numpy(w)[None].to(device)
        logits, mtp = model(t, t[:, 1:])
        lp = torch.log_softmax(logits[0, :-1].double(), -1)
        nll -= lp.gather(-1, t[0, 1:, None]).sum().item()
        count += t.shape[1] - 1
        # MTP at position p (fed token p+1) drafts token p+2; the main model's greedy choice for it is argmax
        # of its logits at p+1 (over positions where both exist: p = 0..T-3 on the real prefix)
        if t.shape[1] > 2:
            d = mtp[0, :-1].argmax(-1)
            g = logits[0, 1:-1].argmax(-1)
            agree += (d == g).sum().item()
            agree_n += d.numel()
    model.train()
    return nll / count, count, agree / max(agree_n, 1)


GOLDEN_CASES = {"long": (0, 160), "short": (2000, 12)}  # (offset into heldout.u16, tokens incl. BOS)


@torch.no_grad()
def write_goldens(model, held_ids, path, device):
    """Cases in the fixtures' golden format: C.tokens, C.prompt_len, C.prefill.logits, C.mtp.logits."""
    out = {}
    for name, (off, n) in GOLDEN_CASES.items():
        toks = np.concatenate([[BOS], held_ids[off:off + n - 1]]).astype(np.int64)
        t = torch.from_numpy(toks)[None].to(device)
        logits, mtp = model(t, t[:, 1:])
        out[f"{name}.tokens"] = ("I32", toks.astype(np.int32))
        out[f"{name}.prompt_len"] = ("I32", np.array([n], dtype=np.int32))
        out[f"{name}.prefill.logits"] = ("F32", logits[0].float().cpu().numpy())
        out[f"{name}.mtp.logits"] = ("F32", mtp[0].float().cpu().numpy())
    M.Q.write_safetensors(path, out)


PROMPTS = ["The president said that", "I don't know what", "In the morning, the", "She looked at him and",
           "The United States"]


@torch.no_grad()
def samples(model, tokenizer_path, device, n_new=40):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return []
    tok = Tokenizer.from_file(tokenizer_path)
    out = []
    for p in PROMPTS:
        ids = [BOS] + tok.encode(p, add_special_tokens=False).ids
        n0 = len(ids)
        for _ in range(n_new):
            logits = model(torch.tensor([ids], device=device))
            nxt = int(logits[0, -1].argmax())
            ids.append(nxt)
            if nxt == 1:
                break
        text = tok.decode(ids[n0:], skip_special_tokens=False)
        out.append({"prompt": p, "continuation": text})
        print(f"  {p!r} -> {text!r}", flush=True)
    return out


def unigram_nll(train_ids, heldout_ids, vocab):
    c = np.bincount(train_ids, minlength=vocab).astype(np.float64) + 1.0  # add-one smoothing
    p = c / c.sum()
    return float(-np.log(p[heldout_ids]).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=float, default=60.0, help="seconds between held-out evaluations")
    ap.add_argument("--config", default=None, help="JSON of Config overrides")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    cfg = M.Config()
    if args.config:
        for k, v in json.loads(args.config).items():
            setattr(cfg, k, v)
    with open(args.tokenizer, encoding="utf-8") as f:
        assert max(t["id"] for t in json.load(f)["added_tokens"]) == cfg.vocab_size - 1
    train_ids = np.fromfile(os.path.join(args.data, "train.u16"), dtype=np.uint16).astype(np.int64)
    held_ids = np.fromfile(os.path.join(args.data, "heldout.u16"), dtype=np.uint16).astype(np.int64)
    print(f"train tokens {len(train_ids)}, held-out tokens {len(held_ids)}", flush=True)

    model = M.Model(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params / 1e6:.2f} M, device {device}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "hc_" not in n and "fn" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "hc_" not in n and "fn" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    train_t = torch.from_numpy(train_ids).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    budget = args.minutes * 60
    warmup = 100
    t0 = time.time()
    last_eval = t0
    step, tokens_seen = 0, 0
    best = (float("inf"), None, 0)
    log = []
    while True:
        elapsed = time.time() - t0
        if elapsed > budget:
            break
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        off = torch.randint(0, len(train_ids) - args.seq - 1, (args.batch,), device=device, generator=gen)
        idx = off[:, None] + torch.arange(args.seq + 1, device=device)[None]
        chunk = torch.cat([torch.full((args.batch, 1), BOS, device=device, dtype=torch.int64), train_t[idx]], 1)
        inp, tgt = chunk[:, :args.seq], chunk[:, 1:args.seq + 1]
        logits, mtp = model(inp, inp[:, 1:])
        loss_main = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        loss_mtp = F.cross_entropy(mtp.flatten(0, 1), chunk[:, 2:args.seq + 1].flatten())
        loss_idx = model.index_loss()
        loss = loss_main + 0.3 * loss_mtp + (loss_idx if loss_idx is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.update_bias(1e-3)
        step += 1
        tokens_seen += args.batch * args.seq
        if step % 50 == 0 or step == 1:
            el = time.time() - t0
            print(f"step {step} t {el:.0f}s lr {lr:.2e} loss {loss_main.item():.3f} mtp {loss_mtp.item():.3f} "
                  f"idx {float(loss_idx) if loss_idx is not None else 0:.3f} tok/s {tokens_seen / el:.0f}",
                  flush=True)
        if time.time() - last_eval > args.eval_every:
            last_eval = time.time()
            nll, _, agree = evaluate(model, held_ids, args.seq, device, max_windows=24)
            log.append({"step": step, "seconds": last_eval - t0, "heldout_nll": nll, "mtp_agree": agree})
            print(f"  eval step {step}: held-out ppl {math.exp(nll):.2f} (24 windows), mtp agree {agree:.3f}",
                  flush=True)
            if nll < best[0]:
                best = (nll, copy.deepcopy(model.state_dict()), step)
    train_seconds = time.time() - t0
    nll, _, _ = evaluate(model, held_ids, args.seq, device, max_windows=24)
    if nll < best[0]:
        best = (nll, model.state_dict(), step)
    print(f"training done: {step} steps, {tokens_seen} tokens, {train_seconds:.0f}s; keeping step {best[2]}",
          flush=True)
    model.load_state_dict(best[1])
    torch.backends.cuda.matmul.allow_tf32 = False
    nll, count, agree = evaluate(model, held_ids, args.seq, device)
    uni = unigram_nll(train_ids, held_ids, cfg.vocab_size)
    summary = {"steps": step, "kept_step": best[2], "tokens_seen": tokens_seen, "train_seconds": train_seconds,
               "batch": args.batch, "seq": args.seq, "lr": args.lr, "seed": args.seed, "params": n_params,
               "heldout_tokens": count, "heldout_nll": nll, "heldout_ppl": math.exp(nll),
               "unigram_ppl": math.exp(uni), "mtp_agree": agree, "device": torch.cuda.get_device_name()
               if device == "cuda" else "cpu", "log": log}
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}), flush=True)
    model.cpu()
    X.export(model, args.out, args.tokenizer)
    # everything below runs on the exported checkpoint, read back through the loader
    exported = M.from_pretrained(args.out).to(device).eval()
    nll, count, agree = evaluate(exported, held_ids, args.seq, device)
    summary.update({"exported_heldout_nll": nll, "exported_heldout_ppl": math.exp(nll), "exported_mtp_agree": agree})
    print(f"exported checkpoint: held-out ppl {math.exp(nll):.3f} over {count} tokens, unigram ppl "
          f"{math.exp(uni):.1f}, MTP agreement {agree:.3f}", flush=True)
    write_goldens(exported, held_ids, os.path.join(args.out, "golden.safetensors"), device)
    summary["samples"] = samples(exported, args.tokenizer, device)
    with open(os.path.join(args.out, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()

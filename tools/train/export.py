"""Writes a model in the published DeepSeek-V4 checkpoint format.

FP8 e4m3 + 128x128 E8M0 `.scale` for wq_a, wq_b, wkv, wo_a, wo_b, shared experts, indexer.wq_b, e_proj, h_proj;
routed experts MXFP4 (I8, two e2m1 codes a byte, low nibble first) + E8M0 per 32; BF16 for embed, head, norms,
gate.weight, compressor wkv/wgate and indexer weights_proj; F32 for hc_*, attn_sink, ape, gate.bias; I64 tid2eid.
The values written are exactly the rounded weights the quantization-aware forward pass uses.

usage (as a library): export.export(model, out_dir, tokenizer_json_path)
"""
import json
import os

import numpy as np
import torch

import model as M
import quant as Q


def weight_formats(model):
    fmt = {}
    for name, mod in model.named_modules():
        if isinstance(mod, M.Linear):
            fmt[name + ".weight"] = mod.fmt
        elif isinstance(mod, M.RMSNorm):
            fmt[name + ".weight"] = "bf16"
        elif isinstance(mod, M.MoE):
            fmt[name + ".gate.weight"] = "bf16" if mod.gate_bf16 else "f32"
            for w in ("w1", "w2", "w3"):
                fmt[f"{name}.experts_{w}"] = "fp4"
    fmt["embed.weight"] = "bf16"
    return fmt


def checkpoint_tensors(model):
    fmt = weight_formats(model)
    names = M.param_names(model)
    out = {}
    for name, v in model.state_dict().items():
        v = v.detach().float().cpu() if v.dtype != torch.int64 else v.cpu()
        f = fmt.get(name, "i64" if v.dtype == torch.int64 else "f32")
        for ck, e in names[name]:
            t = v[e] if e is not None else v
            if f == "fp8":
                q, s = Q.fp8_weight_quant(t)
                out[ck] = ("F8_E4M3", Q.e4m3_encode(q.numpy()))
                out[ck.replace(".weight", ".scale")] = ("F8_E8M0", Q.e8m0_encode(s.numpy()))
            elif f == "fp4":
                q, s = Q.fp4_weight_quant(t)
                out[ck] = ("I8", Q.fp4_pack(Q.e2m1_encode(q.numpy())))
                out[ck.replace(".weight", ".scale")] = ("F8_E8M0", Q.e8m0_encode(s.numpy()))
            elif f == "bf16":
                out[ck] = ("BF16", Q.bf16_encode(t.numpy()))
            elif f == "i64":
                out[ck] = ("I64", t.numpy().astype(np.int64))
            else:
                out[ck] = ("F32", t.numpy().astype(np.float32))
    return out


GENERATION_CONFIG = {"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 1.0, "top_p": 1.0}


def export(model, out_dir, tokenizer_json=None):
    os.makedirs(out_dir, exist_ok=True)
    Q.write_safetensors(os.path.join(out_dir, "model.safetensors"), checkpoint_tensors(model),
                        metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.cfg.to_hf(), f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(GENERATION_CONFIG, f, indent=2)
        f.write("\n")
    if tokenizer_json:
        with open(tokenizer_json, encoding="utf-8") as f:
            tok = f.read()
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tok)

"""DeepSeek-V4 for whole sequences (prefill from position 0), trainable, quantization-aware.

Follows docs/dsv4-model.md section by section; names of modules and parameters are the checkpoint's names
(`layers.3.attn.compressor.wkv.weight`, `mtp.0.e_proj.weight`, ...), except the routed experts, which are kept
stacked (`ffn.experts_w1` [E, I, D]) and mapped to `ffn.experts.E.w1.weight` on load / export.

Computation is float32 throughout. Two switches (model.q.weights, model.q.acts) turn on the model's rounding:
- weights: FP8 e4m3 with one power-of-two scale per 128x128 tile (wq_a, wq_b, wkv, wo_a, wo_b, shared experts,
  indexer.wq_b, e_proj, h_proj), MXFP4 with one scale per 32 (routed experts), BF16 (embed, head, norms,
  gate.weight, compressor wkv/wgate, indexer weights_proj). Forward uses the rounded weight, backward passes the
  gradient straight through to the float32 master weight, so the exported model is the model that was trained.
- acts: FP8 activation rounding per 128 before every FP8 / FP4 GEMM (not wo_a, as in the reference), FP8 KV
  rounding of the non-rope dims per 64, FP4 rounding of indexer queries and keys; straight-through as well.
"""
import json
import math
from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

import quant as Q


@dataclass
class Config:
    vocab_size: int = 6144
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_hash_layers: int = 1
    num_attention_heads: int = 4
    head_dim: int = 128
    qk_rope_head_dim: int = 64
    q_lora_rank: int = 128
    o_groups: int = 2
    o_lora_rank: int = 128
    sliding_window: int = 128
    compress_ratios: List[int] = field(default_factory=lambda: [0, 0, 4, 128, 4, 128, 0])
    compress_rope_theta: float = 160000.0
    rope_theta: float = 10000.0
    rope_factor: float = 16.0
    original_max_position_embeddings: int = 65536
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    index_n_heads: int = 4
    index_head_dim: int = 128
    index_topk: int = 16
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 128
    routed_scaling_factor: float = 1.5
    swiglu_limit: float = 10.0
    hc_mult: int = 4
    hc_sinkhorn_iters: int = 20
    hc_eps: float = 1e-6
    rms_norm_eps: float = 1e-6
    num_nextn_predict_layers: int = 1

    @staticmethod
    def from_hf(d):
        rs = d.get("rope_scaling") or {}
        c = Config()
        for k in list(c.__dict__):
            if k in d:
                setattr(c, k, d[k])
        c.rope_factor = rs.get("factor", c.rope_factor)
        c.original_max_position_embeddings = rs.get("original_max_position_embeddings", 0)
        c.beta_fast = rs.get("beta_fast", c.beta_fast)
        c.beta_slow = rs.get("beta_slow", c.beta_slow)
        assert d.get("scoring_func", "sqrtsoftplus") == "sqrtsoftplus"
        assert d.get("n_shared_experts", 1) == 1
        return c

    def to_hf(self):
        return {
            "architectures": ["DeepseekV4ForCausalLM"],
            "model_type": "deepseek_v4",
            "attention_bias": False,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "hidden_act": "silu",
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
            "expert_dtype": "fp4",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_hash_layers": self.num_hash_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": 1,
            "head_dim": self.head_dim,
            "qk_rope_head_dim": self.qk_rope_head_dim,
            "q_lora_rank": self.q_lora_rank,
            "o_groups": self.o_groups,
            "o_lora_rank": self.o_lora_rank,
            "sliding_window": self.sliding_window,
            "compress_ratios": list(self.compress_ratios),
            "compress_rope_theta": self.compress_rope_theta,
            "rope_theta": self.rope_theta,
            "rope_scaling": {"type": "yarn", "factor": self.rope_factor,
                             "original_max_position_embeddings": self.original_max_position_embeddings,
                             "beta_fast": self.beta_fast, "beta_slow": self.beta_slow},
            "index_n_heads": self.index_n_heads,
            "index_head_dim": self.index_head_dim,
            "index_topk": self.index_topk,
            "n_routed_experts": self.n_routed_experts,
            "n_shared_experts": 1,
            "num_experts_per_tok": self.num_experts_per_tok,
            "moe_intermediate_size": self.moe_intermediate_size,
            "scoring_func": "sqrtsoftplus",
            "topk_method": "noaux_tc",
            "norm_topk_prob": True,
            "routed_scaling_factor": self.routed_scaling_factor,
            "swiglu_limit": self.swiglu_limit,
            "hc_mult": self.hc_mult,
            "hc_sinkhorn_iters": self.hc_sinkhorn_iters,
            "hc_eps": self.hc_eps,
            "num_nextn_predict_layers": 1,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": int(self.original_max_position_embeddings * self.rope_factor),
        }


class QuantFlags:
    def __init__(self):
        self.weights = True
        self.acts = True


# ---- building blocks ----------------------------------------------------------------------------------------

class Linear(nn.Module):
    """y = x W^T with W stored as `fmt` ('fp8', 'bf16' or 'f32'); fp8 GEMMs quantize their input per 128."""

    def __init__(self, q, d_in, d_out, fmt, act_quant=None, std=0.02):
        super().__init__()
        self.q, self.fmt = q, fmt
        self.act_quant = (fmt == "fp8") if act_quant is None else act_quant
        self.weight = nn.Parameter(torch.randn(d_out, d_in) * std)

    def w(self):
        if not self.q.weights:
            return self.weight
        if self.fmt == "fp8":
            return Q.ste(self.weight, Q.fp8_weight_sim)
        if self.fmt == "bf16":
            return Q.ste(self.weight, Q.bf16_sim)
        return self.weight

    def forward(self, x):
        if self.act_quant and self.q.acts:
            x = Q.ste(x, lambda t: Q.fp8_block_sim(t, 128))
        return F.linear(x, self.w())


class RMSNorm(nn.Module):
    def __init__(self, q, dim, eps):
        super().__init__()
        self.q, self.eps = q, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        w = Q.ste(self.weight, Q.bf16_sim) if self.q.weights else self.weight
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w


def rope_freqs(cfg, ratio):
    """theta'_i, i < 32 (section 6.1): base 160000 with YaRN for compressed layers, plain 10000 otherwise."""
    rd = cfg.qk_rope_head_dim
    base = cfg.compress_rope_theta if ratio else cfg.rope_theta
    theta = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd))
    if ratio and cfg.original_max_position_embeddings > 0:
        def d(n):
            return rd * math.log(cfg.original_max_position_embeddings / (n * 2 * math.pi)) / (2 * math.log(base))
        lo = max(math.floor(d(cfg.beta_fast)), 0)
        hi = min(math.ceil(d(cfg.beta_slow)), rd - 1)
        if lo == hi:
            hi += 0.001
        ramp = torch.clamp((torch.arange(rd // 2, dtype=torch.float32) - lo) / (hi - lo), 0, 1)
        theta = theta * (1 - ramp) + theta / cfg.rope_factor * ramp
    return theta


def rope_cos_sin(theta, pos):
    ang = pos.to(torch.float32)[:, None] * theta[None, :]  # [T, 32]
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin, inverse=False):
    """Interleaved pairs on the last 64 dims of x [..., T, (heads,) Dv]; cos/sin broadcastable to [..., 32]."""
    rd = cos.shape[-1] * 2
    nope, r = x[..., :-rd], x[..., -rd:]
    a, b = r[..., 0::2], r[..., 1::2]
    if inverse:
        sin = -sin
    ra = a * cos - b * sin
    rb = a * sin + b * cos
    return torch.cat([nope, torch.stack([ra, rb], dim=-1).flatten(-2)], dim=-1)


def hadamard(n, device):
    h = torch.ones(1, 1, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def sinkhorn(c, iters, eps):
    c = torch.softmax(c, dim=-1) + eps
    c = c / (c.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        c = c / (c.sum(-1, keepdim=True) + eps)
        c = c / (c.sum(-2, keepdim=True) + eps)
    return c


class HC(nn.Module):
    """mHC parameters of one sublayer (fn [24, hc*D], scale [3], base [24]) and HCPre / HCPost (section 5)."""

    def __init__(self, cfg, n_out):
        super().__init__()
        hc, d = cfg.hc_mult, cfg.hidden_size
        self.cfg = cfg
        self.fn = nn.Parameter(torch.randn(n_out, hc * d) * 1e-3)
        self.scale = nn.Parameter(torch.ones(3 if n_out > hc else 1))
        base = torch.zeros(n_out)
        base[:hc] = -math.log(hc - 1)  # pre weights start at 1/hc: y = mean of the streams
        if n_out > hc:
            base[2 * hc:] = (torch.eye(hc) * 4).flatten()  # comb starts close to the identity
        self.base = nn.Parameter(base)

    def mixes(self, x):
        xf = x.flatten(-2)  # [B, T, hc*D]
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.cfg.rms_norm_eps)
        return F.linear(xf, self.fn) * r

    def pre(self, x):
        cfg, hc = self.cfg, self.cfg.hc_mult
        m = self.mixes(x)  # [B, T, 24]
        pre = torch.sigmoid(m[..., :hc] * self.scale[0] + self.base[:hc]) + cfg.hc_eps
        post = 2 * torch.sigmoid(m[..., hc:2 * hc] * self.scale[1] + self.base[hc:2 * hc])
        c = (m[..., 2 * hc:] * self.scale[2] + self.base[2 * hc:]).unflatten(-1, (hc, hc))
        c = sinkhorn(c, cfg.hc_sinkhorn_iters, cfg.hc_eps)
        y = (pre.unsqueeze(-1) * x).sum(-2)
        return y, post, c

    def head(self, x):
        m = self.mixes(x)
        g = torch.sigmoid(m * self.scale[0] + self.base) + self.cfg.hc_eps
        return (g.unsqueeze(-1) * x).sum(-2)

    @staticmethod
    def post(f, a, post, c):
        # X'_k = post_k f + sum_j C_jk A_j
        return post.unsqueeze(-1) * f.unsqueeze(-2) + torch.einsum("btjk,btjd->btkd", c, a)


# ---- attention ----------------------------------------------------------------------------------------------

class Compressor(nn.Module):
    """Gated pooling of blocks of `ratio` tokens into one entry (section 7); overlapping when ratio == 4."""

    def __init__(self, cfg, q, d, ratio, kind):
        super().__init__()
        self.cfg, self.q, self.d, self.ratio, self.kind = cfg, q, d, ratio, kind
        coff = 2 if ratio == 4 else 1
        D = cfg.hidden_size
        self.wkv = Linear(q, D, coff * d, "bf16")
        self.wgate = Linear(q, D, coff * d, "bf16")
        self.ape = nn.Parameter(torch.zeros(ratio, coff * d))
        self.norm = RMSNorm(q, d, cfg.rms_norm_eps)

    def forward(self, y, cos, sin, had):
        B, T, _ = y.shape
        r, d = self.ratio, self.d
        nc = T // r
        if nc == 0:
            return y.new_zeros(B, 0, d)
        yb = y[:, :nc * r]
        a = self.wkv(yb).unflatten(1, (nc, r))  # [B, nc, r, coff*d]
        g = self.wgate(yb).unflatten(1, (nc, r)) + self.ape
        if r == 4:
            # block j pools the previous block's first halves and its own second halves (8 candidates)
            pa = F.pad(a[:, :-1, :, :d], (0, 0, 0, 0, 1, 0))
            pg = F.pad(g[:, :-1, :, :d], (0, 0, 0, 0, 1, 0), value=float("-inf"))
            a = torch.cat([pa, a[..., d:]], dim=2)
            g = torch.cat([pg, g[..., d:]], dim=2)
        z = (torch.softmax(g, dim=2) * a).sum(2)  # [B, nc, d]
        z = self.norm(z)
        pos = torch.arange(nc, device=y.device) * r
        z = apply_rope(z, cos[pos], sin[pos])
        if self.kind == "attn":
            if self.q.acts:
                rd = self.cfg.qk_rope_head_dim
                z = torch.cat([Q.ste(z[..., :-rd], lambda t: Q.fp8_block_sim(t, 64)), z[..., -rd:]], -1)
        else:
            z = z @ had
            if self.q.acts:
                z = Q.ste(z, lambda t: Q.fp4_block_sim(t, 32))
        return z


class Indexer(nn.Module):
    """Lightning indexer of ratio-4 layers (section 8): scores compressed entries, keeps the top-k."""

    def __init__(self, cfg, q):
        super().__init__()
        self.cfg, self.q = cfg, q
        nh, hd = cfg.index_n_heads, cfg.index_head_dim
        self.wq_b = Linear(q, cfg.q_lora_rank, nh * hd, "fp8")
        self.weights_proj = Linear(q, cfg.hidden_size, nh, "bf16")
        self.compressor = Compressor(cfg, q, hd, 4, "index")

    def forward(self, y, qr, cos, sin, valid):
        cfg = self.cfg
        B, T, _ = y.shape
        nh, hd = cfg.index_n_heads, cfg.index_head_dim
        had = hadamard(hd, y.device)
        k = self.compressor(y, cos, sin, had)  # [B, nc, hd]
        qi = self.wq_b(qr).unflatten(-1, (nh, hd))
        qi = apply_rope(qi, cos[:T, None], sin[:T, None]) @ had
        if self.q.acts:
            qi = Q.ste(qi, lambda t: Q.fp4_block_sim(t, 32))
        w = self.weights_proj(y) * (hd ** -0.5 * nh ** -0.5)  # [B, T, nh]
        s = torch.relu(torch.einsum("bthd,bjd->bthj", qi, k))
        score = torch.einsum("bth,bthj->btj", w, s)  # [B, T, nc]
        return score.masked_fill(~valid, float("-inf"))


class Attention(nn.Module):
    def __init__(self, cfg, q, ratio):
        super().__init__()
        self.cfg, self.q, self.ratio = cfg, q, ratio
        D, H, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
        G = cfg.o_groups
        self.attn_sink = nn.Parameter(torch.zeros(H))
        self.wq_a = Linear(q, D, cfg.q_lora_rank, "fp8")
        self.q_norm = RMSNorm(q, cfg.q_lora_rank, cfg.rms_norm_eps)
        self.wq_b = Linear(q, cfg.q_lora_rank, H * hd, "fp8")
        self.wkv = Linear(q, D, hd, "fp8")
        self.kv_norm = RMSNorm(q, hd, cfg.rms_norm_eps)
        # wo_a is stored FP8 but used as a dequantized matrix without activation rounding
        self.wo_a = Linear(q, (H // G) * hd, G * cfg.o_lora_rank, "fp8", act_quant=False)
        self.wo_b = Linear(q, G * cfg.o_lora_rank, D, "fp8", std=0.02 / math.sqrt(2 * cfg.num_hidden_layers))
        if ratio:
            self.compressor = Compressor(cfg, q, hd, ratio, "attn")
        if ratio == 4:
            self.indexer = Indexer(cfg, q)
        self.register_buffer("theta", rope_freqs(cfg, ratio), persistent=False)
        self.index_loss = None

    def forward(self, y):
        cfg = self.cfg
        B, T, D = y.shape
        H, hd, rd = cfg.num_attention_heads, cfg.head_dim, cfg.qk_rope_head_dim
        pos = torch.arange(T, device=y.device)
        cos, sin = rope_cos_sin(self.theta, pos)
        qr = self.q_norm(self.wq_a(y))
        q = self.wq_b(qr).unflatten(-1, (H, hd))  # [B, T, H, hd]
        q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)
        q = apply_rope(q, cos[:, None], sin[:, None])
        kv = apply_rope(self.kv_norm(self.wkv(y)), cos, sin)  # [B, T, hd]
        if self.q.acts:
            kv = torch.cat([Q.ste(kv[..., :-rd], lambda t: Q.fp8_block_sim(t, 64)), kv[..., -rd:]], -1)
        scale = hd ** -0.5
        s_w = torch.einsum("bthd,bsd->bhts", q, kv) * scale
        dist = pos[:, None] - pos[None, :]
        s_w = s_w.masked_fill(~((dist >= 0) & (dist < cfg.sliding_window)), float("-inf"))
        scores = [s_w]
        self.index_loss = None
        if self.ratio:
            comp = self.compressor(y, cos, sin, None)  # [B, nc, hd]
            nc = comp.shape[1]
            s_c = torch.einsum("bthd,bjd->bhtj", q, comp) * scale
            valid = ((torch.arange(nc, device=y.device)[None, :] + 1) * self.ratio <= pos[:, None] + 1)  # [T, nc]
            valid = valid[None].expand(B, T, nc)
            if self.ratio == 4 and nc > 0:
                # the indexer learns from the attention's own distribution over compressed entries (its
                # inputs are detached, so this loss trains the indexer alone, as in DeepSeek's sparse attention)
                iscore = self.indexer(y.detach() if self.training else y,
                                      qr.detach() if self.training else qr, cos, sin, valid)
                k = min(cfg.index_topk, nc)
                top = iscore.topk(k, dim=-1).indices
                sel = torch.zeros_like(valid).scatter(-1, top, True) & valid
                if self.training:
                    with torch.no_grad():
                        tgt = torch.softmax(s_c.masked_fill(~valid[:, None], float("-inf")), -1)
                        tgt = torch.nan_to_num(tgt.mean(1))  # [B, T, nc]
                    rows = valid.any(-1)
                    logp = torch.log_softmax(iscore, -1).masked_fill(~valid, 0.0)
                    kl = (tgt * (torch.log(tgt.clamp(min=1e-20)) - logp)).sum(-1)
                    self.index_loss = kl[rows].mean()
                valid = sel
            s_c = s_c.masked_fill(~valid[:, None], float("-inf"))
            scores.append(s_c)
        sink = self.attn_sink.view(1, H, 1, 1).expand(B, H, T, 1)
        p = torch.softmax(torch.cat(scores + [sink], -1), -1)
        o = torch.einsum("bhts,bsd->bthd", p[..., :T], kv)
        if self.ratio and comp.shape[1]:
            o = o + torch.einsum("bhtj,bjd->bthd", p[..., T:T + comp.shape[1]], comp)
        o = apply_rope(o, cos[:, None], sin[:, None], inverse=True)
        G = cfg.o_groups
        wa = self.wo_a.w().unflatten(0, (G, cfg.o_lora_rank))  # [G, o_lora, Hg*hd]
        u = torch.einsum("btgk,grk->btgr", o.reshape(B, T, G, (H // G) * hd), wa)
        return self.wo_b(u.flatten(-2))


# ---- MoE ----------------------------------------------------------------------------------------------------

class MoE(nn.Module):
    def __init__(self, cfg, q, layer_id):
        super().__init__()
        self.cfg, self.q = cfg, q
        D, I, E = cfg.hidden_size, cfg.moe_intermediate_size, cfg.n_routed_experts
        self.hash = layer_id < cfg.num_hash_layers
        self.gate = nn.Module()
        self.gate.weight = nn.Parameter(torch.randn(E, D) * 0.02)
        self.gate_bf16 = True  # published checkpoints store gate.weight as BF16; the loader follows the file
        if self.hash:
            g = torch.Generator().manual_seed(1000 + layer_id)
            tid = torch.stack([torch.randperm(E, generator=g)[:cfg.num_experts_per_tok]
                               for _ in range(cfg.vocab_size)])
            self.gate.register_buffer("tid2eid", tid.to(torch.int64))
        else:
            self.gate.register_buffer("bias", torch.zeros(E))
        out_std = 0.02 / math.sqrt(2 * cfg.num_hidden_layers)
        self.experts_w1 = nn.Parameter(torch.randn(E, I, D) * 0.02)
        self.experts_w3 = nn.Parameter(torch.randn(E, I, D) * 0.02)
        self.experts_w2 = nn.Parameter(torch.randn(E, D, I) * out_std)
        self.shared_experts = nn.Module()
        self.shared_experts.w1 = Linear(q, D, I, "fp8")
        self.shared_experts.w3 = Linear(q, D, I, "fp8")
        self.shared_experts.w2 = Linear(q, I, D, "fp8", std=out_std)
        self.load = None

    def ew(self, w):
        return Q.ste(w, Q.fp4_weight_sim) if self.q.weights else w

    def swiglu(self, gate, up):
        lim = self.cfg.swiglu_limit
        if lim > 0:
            up = torch.clamp(up, -lim, lim)
            gate = torch.clamp(gate, max=lim)
        return F.silu(gate) * up

    def forward(self, y, tokens):
        cfg = self.cfg
        E, K = cfg.n_routed_experts, cfg.num_experts_per_tok
        gw = Q.ste(self.gate.weight, Q.bf16_sim) if self.q.weights and self.gate_bf16 else self.gate.weight
        s = torch.sqrt(F.softplus(F.linear(y, gw)))  # [B, T, E]
        if self.hash:
            idx = self.gate.tid2eid[tokens]
        else:
            idx = (s + self.gate.bias).topk(K, dim=-1).indices
        ws = s.gather(-1, idx)
        ws = ws / ws.sum(-1, keepdim=True) * cfg.routed_scaling_factor
        route = torch.zeros_like(s).scatter(-1, idx, ws)  # [B, T, E], zero for experts not chosen
        with torch.no_grad():
            self.load = torch.zeros(E, device=y.device).scatter_add_(
                0, idx.flatten(), torch.ones(idx.numel(), device=y.device)) / idx.numel()
        x = Q.ste(y, lambda t: Q.fp8_block_sim(t, 128)) if self.q.acts else y
        # every expert on every token, weighted by `route` (exactly the sparse sum: unchosen weights are 0)
        gate = torch.einsum("btd,eid->ebti", x, self.ew(self.experts_w1))
        up = torch.einsum("btd,eid->ebti", x, self.ew(self.experts_w3))
        h = self.swiglu(gate, up) * route.permute(2, 0, 1).unsqueeze(-1)
        if self.q.acts:
            h = Q.ste(h, lambda t: Q.fp8_block_sim(t, 128))
        out = torch.einsum("ebti,edi->btd", h, self.ew(self.experts_w2))
        se = self.shared_experts
        return out + se.w2(self.swiglu(se.w1(y), se.w3(y)))


# ---- blocks and model ---------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, cfg, q, layer_id, ratio):
        super().__init__()
        self.hc_attn = HC(cfg, (2 + cfg.hc_mult) * cfg.hc_mult)
        self.hc_ffn = HC(cfg, (2 + cfg.hc_mult) * cfg.hc_mult)
        self.attn_norm = RMSNorm(q, cfg.hidden_size, cfg.rms_norm_eps)
        self.ffn_norm = RMSNorm(q, cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg, q, ratio)
        self.ffn = MoE(cfg, q, layer_id)

    def forward(self, x, tokens):
        y, post, c = self.hc_attn.pre(x)
        x = HC.post(self.attn(self.attn_norm(y)), x, post, c)
        y, post, c = self.hc_ffn.pre(x)
        return HC.post(self.ffn(self.ffn_norm(y), tokens), x, post, c)


class MTPBlock(Block):
    def __init__(self, cfg, q, layer_id, ratio):
        super().__init__(cfg, q, layer_id, ratio)
        D = cfg.hidden_size
        self.e_proj = Linear(q, D, D, "fp8")
        self.h_proj = Linear(q, D, D, "fp8")
        self.enorm = RMSNorm(q, D, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(q, D, cfg.rms_norm_eps)
        self.norm = RMSNorm(q, D, cfg.rms_norm_eps)
        self.hc_head = HC(cfg, cfg.hc_mult)


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.q = QuantFlags()
        q, D = self.q, cfg.hidden_size
        L = cfg.num_hidden_layers
        assert len(cfg.compress_ratios) == L + 1
        self.embed = nn.Embedding(cfg.vocab_size, D)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.layers = nn.ModuleList([Block(cfg, q, i, cfg.compress_ratios[i]) for i in range(L)])
        self.mtp = nn.ModuleList([MTPBlock(cfg, q, L, cfg.compress_ratios[L])])
        self.hc_head = HC(cfg, cfg.hc_mult)
        self.norm = RMSNorm(q, D, cfg.rms_norm_eps)
        self.head = Linear(q, D, cfg.vocab_size, "bf16")

    def embed_tokens(self, tokens):
        w = Q.ste(self.embed.weight, Q.bf16_sim) if self.q.weights else self.embed.weight
        return F.embedding(tokens, w)

    def logits(self, x, hc_head, norm):
        return self.head(norm(hc_head.head(x)))

    def forward(self, tokens, mtp_tokens=None, return_hidden=False):
        """tokens [B, T] -> main logits [B, T, V]; with mtp_tokens [B, T-1] (tokens[:, 1:] or the next ones),
        also the MTP logits [B, T-1, V] for positions 0..T-2 (they predict the token two ahead)."""
        e = self.embed_tokens(tokens)
        x = e.unsqueeze(2).expand(-1, -1, self.cfg.hc_mult, -1)  # [B, T, hc, D]
        hidden = []
        for layer in self.layers:
            x = layer(x, tokens)
            hidden.append(x)
        logits = self.logits(x, self.hc_head, self.norm)
        out = [logits]
        if mtp_tokens is not None:
            m = self.mtp[0]
            n = mtp_tokens.shape[1]
            ee = m.enorm(self.embed_tokens(mtp_tokens))
            z = m.h_proj(m.hnorm(x[:, :n])) + m.e_proj(ee).unsqueeze(2)
            z = m(z, None)
            out.append(self.logits(z, m.hc_head, m.norm))
        if return_hidden:
            out.append(hidden)
        return out if len(out) > 1 else logits

    def index_loss(self):
        ls = [l.attn.index_loss for l in self.layers if l.attn.index_loss is not None]
        return sum(ls) / len(ls) if ls else None

    @torch.no_grad()
    def update_bias(self, rate):
        """Auxiliary-loss-free balancing: push each non-hash gate's bias toward an even expert load."""
        for blk in list(self.layers) + list(self.mtp):
            ffn = blk.ffn
            if not ffn.hash and ffn.load is not None:
                ffn.gate.bias += rate * torch.sign(ffn.load.mean() - ffn.load)


# ---- checkpoint names ---------------------------------------------------------------------------------------

def param_names(model):
    """model state name -> list of (checkpoint name, index into the stacked expert dim or None)"""
    out = {}
    for name in model.state_dict():
        ck = name.replace("hc_attn.fn", "hc_attn_fn").replace("hc_attn.scale", "hc_attn_scale") \
            .replace("hc_attn.base", "hc_attn_base").replace("hc_ffn.fn", "hc_ffn_fn") \
            .replace("hc_ffn.scale", "hc_ffn_scale").replace("hc_ffn.base", "hc_ffn_base") \
            .replace("hc_head.fn", "hc_head_fn").replace("hc_head.scale", "hc_head_scale") \
            .replace("hc_head.base", "hc_head_base")
        if ".experts_w" in ck:
            w = ck.split(".experts_")[1]
            pre = ck.split(".experts_")[0]
            E = model.cfg.n_routed_experts
            out[name] = [(f"{pre}.experts.{e}.{w}.weight", e) for e in range(E)]
        else:
            out[name] = [(ck, None)]
    return out


def load_checkpoint(model, path):
    """Loads a checkpoint in the published format (dequantizing FP8 / FP4 / BF16 exactly)."""
    import numpy as np
    t = Q.read_safetensors(path)
    used = set()
    sd = model.state_dict()
    for name, targets in param_names(model).items():
        parts = []
        for ck, _ in targets:
            if ck not in t:
                raise KeyError(f"{path}: missing tensor {ck}")
            dt, arr = t[ck]
            used.add(ck)
            if dt == "I8":
                sdt, s = t[ck.replace(".weight", ".scale")]
                used.add(ck.replace(".weight", ".scale"))
                v = Q.fp4_unpack(arr) * np.repeat(Q.to_float(sdt, s), 32, axis=-1)
            elif dt == "F8_E4M3":
                sdt, s = t[ck.replace(".weight", ".scale")]
                used.add(ck.replace(".weight", ".scale"))
                sf = np.repeat(np.repeat(Q.to_float(sdt, s), 128, 0), 128, 1)[:arr.shape[0], :arr.shape[1]]
                v = Q.E4M3_TABLE[arr] * sf
            elif ck.endswith("ffn.gate.weight"):
                v = Q.to_float(dt, arr)
                model.get_submodule(name[:-len(".gate.weight")]).gate_bf16 = dt == "BF16"
            elif dt == "I64":
                v = arr
            else:
                v = Q.to_float(dt, arr)
            parts.append(torch.from_numpy(np.array(v)))
        v = torch.stack(parts) if targets[0][1] is not None else parts[0]
        if tuple(v.shape) != tuple(sd[name].shape):
            raise ValueError(f"{path}: {targets[0][0]} has shape {tuple(v.shape)}, expected {tuple(sd[name].shape)}")
        sd[name].copy_(v.to(sd[name].dtype))
    extra = set(t) - used
    if extra:
        raise KeyError(f"{path}: unexpected tensors {sorted(extra)[:5]}")


def from_pretrained(d):
    with open(f"{d}/config.json") as f:
        cfg = Config.from_hf(json.load(f))
    m = Model(cfg)
    load_checkpoint(m, f"{d}/model.safetensors")
    return m

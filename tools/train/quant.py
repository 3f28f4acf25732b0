"""Number formats of DeepSeek-V4 as float32 torch ops (quantize, then dequantize), and safetensors I/O.

Everything here is exact: scales are powers of two and e4m3 / e2m1 values are rebuilt from step sizes that are
powers of two, so dividing and multiplying never adds rounding of its own. torch.round rounds half to even,
which is the rounding of the hardware conversions (ties to even).
"""
import json
import struct

import numpy as np
import torch

FP8_MAX = 448.0
FP4_MAX = 6.0


def exp2i(e):
    # 2**e for an integer tensor, exact
    return torch.ldexp(torch.ones_like(e, dtype=torch.float32), e)


def pow2ceil(x):
    # smallest power of two >= x (x > 0): the ue8m0 rounding of a computed scale
    m, e = torch.frexp(x)  # x = m * 2**e, m in [0.5, 1)
    e = torch.where(m == 0.5, e - 1, e)
    return exp2i(e)


def round_e4m3(x):
    # nearest e4m3fn value (ties to even); x must already lie in [-448, 448]
    _, e = torch.frexp(x.abs())
    e = torch.clamp(e - 1, min=-6)  # floor(log2 |x|); below 2**-6 the subnormal step 2**-9 applies
    step = exp2i(e - 3)
    return torch.round(x / step) * step


def round_e2m1(x):
    # nearest e2m1 value on {0, 0.5, 1, 1.5, 2, 3, 4, 6} (ties to even); x must lie in [-6, 6]
    a = x.abs()
    step = torch.where(a < 2, torch.full_like(a, 0.5), torch.where(a < 4, torch.ones_like(a), torch.full_like(a, 2.0)))
    return torch.round(x / step) * step


def fp8_block_sim(x, block):
    """Per `block` elements of the last dim: s = pow2ceil(max(amax, 1e-4) / 448), x -> e4m3(x / s) * s.
    This is both the activation quantizer before FP8/FP4 GEMMs (block 128) and the KV fp8_sim (block 64)."""
    shape = x.shape
    xb = x.reshape(*shape[:-1], shape[-1] // block, block)
    amax = xb.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    s = pow2ceil(amax / FP8_MAX)
    q = round_e4m3(torch.clamp(xb / s, -FP8_MAX, FP8_MAX))
    return (q * s).reshape(shape)


def fp4_block_sim(x, block=32):
    """Indexer fp4_sim: per 32 of the last dim, s = pow2ceil(max(amax, 6 * 2**-126) / 6), x -> e2m1(x / s) * s."""
    shape = x.shape
    xb = x.reshape(*shape[:-1], shape[-1] // block, block)
    amax = xb.abs().amax(-1, keepdim=True).clamp(min=FP4_MAX * 2.0 ** -126)
    s = pow2ceil(amax / FP4_MAX)
    q = round_e2m1(torch.clamp(xb / s, -FP4_MAX, FP4_MAX))
    return (q * s).reshape(shape)


# ---- weights ------------------------------------------------------------------------------------------------

def fp8_weight_quant(w):
    """[N, K] -> (values e4m3 as float [N, K], scale [ceil(N/128), ceil(K/128)] powers of two).
    One scale per 128x128 tile: pow2ceil(amax / 448), the ue8m0 rule of the published checkpoints."""
    n, k = w.shape
    nb, kb = (n + 127) // 128, (k + 127) // 128
    wp = torch.zeros(nb * 128, kb * 128, dtype=torch.float32, device=w.device)
    wp[:n, :k] = w
    t = wp.reshape(nb, 128, kb, 128)
    amax = t.abs().amax(dim=(1, 3)).clamp(min=2.0 ** -100)
    s = pow2ceil(amax / FP8_MAX)  # [nb, kb]
    q = round_e4m3(torch.clamp(t / s[:, None, :, None], -FP8_MAX, FP8_MAX))
    return q.reshape(nb * 128, kb * 128)[:n, :k], s


def fp8_weight_sim(w):
    q, s = fp8_weight_quant(w)
    n, k = w.shape
    sf = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:n, :k]
    return q * sf


def fp4_weight_quant(w):
    """[..., N, K] -> (e2m1 values as float, scale [..., N, K/32]); MXFP4 with one power-of-two scale per 32."""
    shape = w.shape
    wb = w.reshape(*shape[:-1], shape[-1] // 32, 32)
    amax = wb.abs().amax(-1, keepdim=True).clamp(min=2.0 ** -100)
    s = pow2ceil(amax / FP4_MAX)
    q = round_e2m1(torch.clamp(wb / s, -FP4_MAX, FP4_MAX))
    return q.reshape(shape), s.squeeze(-1)


def fp4_weight_sim(w):
    q, s = fp4_weight_quant(w)
    return q * s.repeat_interleave(32, -1)


def bf16_sim(w):
    return w.to(torch.bfloat16).to(torch.float32)


def ste(x, fn):
    """Straight-through: forward fn(x), backward identity."""
    with torch.no_grad():
        y = fn(x)
    return x + (y - x).detach()


# ---- byte encodings -----------------------------------------------------------------------------------------

def _e4m3_table():
    v = np.zeros(256, dtype=np.float32)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            val = np.nan
        elif e == 0:
            val = m / 8 * 2.0 ** -6
        else:
            val = (1 + m / 8) * 2.0 ** (e - 7)
        v[b] = -val if s else val
    return v


E4M3_TABLE = _e4m3_table()
E2M1_TABLE = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)
_E4M3_POS = E4M3_TABLE[:127]  # codes 0x00..0x7e: increasing non-negative values


def e4m3_encode(v):
    """float array of exact e4m3 values -> uint8 codes"""
    v = np.asarray(v, dtype=np.float32)
    code = np.searchsorted(_E4M3_POS, np.abs(v)).astype(np.uint8)
    assert np.array_equal(_E4M3_POS[code], np.abs(v)), "value not representable in e4m3"
    return code | np.where(v < 0, 0x80, 0).astype(np.uint8)


def e2m1_encode(v):
    v = np.asarray(v, dtype=np.float32)
    mags = E2M1_TABLE[:8]
    code = np.searchsorted(mags, np.abs(v)).astype(np.uint8)
    assert np.array_equal(mags[code], np.abs(v)), "value not representable in e2m1"
    return code | np.where(v < 0, 8, 0).astype(np.uint8)


def e8m0_encode(s):
    """power-of-two float array -> biased exponent bytes"""
    s = np.asarray(s, dtype=np.float32)
    m, e = np.frexp(s)
    assert np.all(m == 0.5), "scale is not a power of two"
    b = e - 1 + 127
    assert np.all((b >= 0) & (b <= 254))
    return b.astype(np.uint8)


def e8m0_decode(b):
    return np.ldexp(np.float32(1), b.astype(np.int32) - 127).astype(np.float32)


def bf16_decode(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def bf16_encode(f):
    # round to nearest even (inputs are finite)
    u = np.asarray(f, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def fp4_unpack(i8):
    """[N, K/2] int8 -> [N, K] e2m1 values (element 2j in the low nibble of byte j)"""
    u = i8.view(np.uint8)
    lo, hi = u & 15, u >> 4
    codes = np.stack([lo, hi], axis=-1).reshape(*u.shape[:-1], u.shape[-1] * 2)
    return E2M1_TABLE[codes]


def fp4_pack(codes):
    c = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
    return (c[..., 0] | (c[..., 1] << 4)).astype(np.uint8).view(np.int8)


# ---- safetensors --------------------------------------------------------------------------------------------

_NP = {"F32": np.float32, "I64": np.int64, "I32": np.int32, "I8": np.int8, "BF16": np.uint16,
       "F8_E4M3": np.uint8, "F8_E8M0": np.uint8, "U8": np.uint8, "F16": np.float16}


def read_safetensors(path):
    """-> {name: (dtype string, numpy array of the raw storage type)}"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=_NP[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype string, numpy array whose bytes are the storage)}; names sorted like the HF writer"""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt, arr = tensors[name]
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_float(dtype, arr):
    if dtype == "BF16":
        return bf16_decode(arr)
    if dtype == "F8_E4M3":
        return E4M3_TABLE[arr]
    if dtype == "F8_E8M0":
        return e8m0_decode(arr)
    return arr.astype(np.float32)

// CPU implementations of the op table, scalar-correct with OpenMP over independent rows.
#include "cpu/cpu_ops.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/dtype.h"

namespace dsinfer::cpu {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// Sum of squares in double: insensitive to order, so every row gets the same value however it
// is batched.
inline float mean_square(const float* x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
    return float(s / double(n));
}
}  // namespace

void act_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block, bool pow2) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 18))
    for (int64_t r = 0; r < rows; ++r) {
        float* row = x + r * ld;
        for (int64_t b0 = 0; b0 < cols; b0 += block) {
            const int64_t b1 = std::min(cols, b0 + block);
            float amax = 0.f;
            for (int64_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(row[i]));
            amax = std::max(amax, 1e-4f);
            float s = amax / 448.f;
            if (pow2) s = pow2ceil(s);
            for (int64_t i = b0; i < b1; ++i) {
                const float v = std::clamp(row[i] / s, -448.f, 448.f);
                row[i] = round_e4m3(v) * s;
            }
        }
    }
}

void fp4_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block) {
    const float kMin = 6.f * std::ldexp(1.f, -126);
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 18))
    for (int64_t r = 0; r < rows; ++r) {
        float* row = x + r * ld;
        for (int64_t b0 = 0; b0 < cols; b0 += block) {
            const int64_t b1 = std::min(cols, b0 + block);
            float amax = 0.f;
            for (int64_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(row[i]));
            amax = std::max(amax, kMin);
            const float s = pow2ceil(amax / 6.f);
            for (int64_t i = b0; i < b1; ++i) {
                const float v = std::clamp(row[i] / s, -6.f, 6.f);
                row[i] = round_e2m1(v) * s;
            }
        }
    }
}

void hadamard(float* x, int64_t rows, int64_t n) {
    const float norm = 1.f / std::sqrt(float(n));
    for (int64_t r = 0; r < rows; ++r) {
        float* v = x + r * n;
        for (int64_t h = 1; h < n; h <<= 1)
            for (int64_t i = 0; i < n; i += 2 * h)
                for (int64_t j = i; j < i + h; ++j) {
                    const float a = v[j], b = v[j + h];
                    v[j] = a + b;
                    v[j + h] = a - b;
                }
        for (int64_t i = 0; i < n; ++i) v[i] *= norm;
    }
}

void rmsnorm(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y) {
#pragma omp parallel for schedule(static) if (rows * dim > (1 << 18))
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        float* yr = y + r * dim;
        const float rs = 1.f / std::sqrt(mean_square(xr, dim) + eps);
        for (int64_t i = 0; i < dim; ++i) yr[i] = w ? w[i] * (xr[i] * rs) : xr[i] * rs;
    }
}

void rope_freqs(int64_t rope_dim, double base, int64_t original_seq_len, double factor, double beta_fast,
                double beta_slow, float* out) {
    const int64_t half = rope_dim / 2;
    for (int64_t i = 0; i < half; ++i) {
        const float e = float(2 * i) / float(rope_dim);
        out[i] = 1.f / float(std::pow(double(float(base)), double(e)));
    }
    if (original_seq_len <= 0) return;
    auto corr_dim = [&](double rot) {
        return double(rope_dim) * std::log(double(original_seq_len) / (rot * 2 * M_PI)) / (2 * std::log(base));
    };
    double lo = std::max(std::floor(corr_dim(beta_fast)), 0.0);
    double hi = std::min(std::ceil(corr_dim(beta_slow)), double(rope_dim - 1));
    if (lo == hi) hi += 0.001;
    const float flo = float(lo), fhi = float(hi), ffac = float(factor);
    for (int64_t i = 0; i < half; ++i) {
        float ramp = (float(i) - flo) / (fhi - flo);
        ramp = std::clamp(ramp, 0.f, 1.f);
        const float smooth = 1.f - ramp;
        out[i] = out[i] / ffac * (1.f - smooth) + out[i] * smooth;
    }
}

void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int64_t* pos, const ops::RopeFreqs& f,
          bool inverse) {
    const int64_t rd = f.rope_dim, half = rd / 2;
#pragma omp parallel if (rows * heads * f.rope_dim > (1 << 18))
    {
        std::vector<float> cs(static_cast<size_t>(2 * half));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t i = 0; i < half; ++i) {
                const float ang = float(pos[r]) * f.freqs[i];
                cs[2 * i] = float(std::cos(double(ang)));
                cs[2 * i + 1] = float(std::sin(double(ang)));
                if (inverse) cs[2 * i + 1] = -cs[2 * i + 1];
            }
            for (int64_t hh = 0; hh < heads; ++hh) {
                float* v = x + (r * heads + hh) * head_dim + (head_dim - rd);
                for (int64_t i = 0; i < half; ++i) {
                    const float a = v[2 * i], b = v[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
                    v[2 * i] = a * c - b * s;
                    v[2 * i + 1] = a * s + b * c;
                }
            }
        }
    }
}

void hc_split_sinkhorn(const float* mixes, int64_t hc, const float* scale, const float* base, int iters, float hc_eps,
                       float* pre, float* post, float* comb) {
    for (int64_t i = 0; i < hc; ++i) pre[i] = sigmoid(mixes[i] * scale[0] + base[i]) + hc_eps;
    for (int64_t i = 0; i < hc; ++i) post[i] = 2.f * sigmoid(mixes[hc + i] * scale[1] + base[hc + i]);
    float* c = comb;
    for (int64_t j = 0; j < hc * hc; ++j) c[j] = mixes[2 * hc + j] * scale[2] + base[2 * hc + j];
    // Row softmax, plus eps.
    for (int64_t j = 0; j < hc; ++j) {
        float* row = c + j * hc;
        float m = row[0];
        for (int64_t k = 1; k < hc; ++k) m = std::max(m, row[k]);
        float s = 0.f;
        for (int64_t k = 0; k < hc; ++k) s += (row[k] = std::exp(row[k] - m));
        for (int64_t k = 0; k < hc; ++k) row[k] = row[k] / s + hc_eps;
    }
    auto col_norm = [&] {
        for (int64_t k = 0; k < hc; ++k) {
            float s = 0.f;
            for (int64_t j = 0; j < hc; ++j) s += c[j * hc + k];
            for (int64_t j = 0; j < hc; ++j) c[j * hc + k] /= (s + hc_eps);
        }
    };
    auto row_norm = [&] {
        for (int64_t j = 0; j < hc; ++j) {
            float s = 0.f;
            for (int64_t k = 0; k < hc; ++k) s += c[j * hc + k];
            for (int64_t k = 0; k < hc; ++k) c[j * hc + k] /= (s + hc_eps);
        }
    };
    col_norm();
    for (int it = 1; it < iters; ++it) {
        row_norm();
        col_norm();
    }
}

void hc_pre(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale, const float* base,
            int iters, float hc_eps, float norm_eps, float* y, float* post, float* comb) {
    const int64_t mix = (2 + hc) * hc, width = hc * d;
#pragma omp parallel for schedule(static) if (t * hc * d * (2 + hc) * hc > (1 << 21))
    for (int64_t i = 0; i < t; ++i) {
        const float* xi = x + i * width;
        const float rs = 1.f / std::sqrt(mean_square(xi, width) + norm_eps);
        std::vector<float> m(static_cast<size_t>(mix)), pre(static_cast<size_t>(hc));
        for (int64_t j = 0; j < mix; ++j) m[j] = dot(fn + j * width, xi, width) * rs;
        hc_split_sinkhorn(m.data(), hc, scale, base, iters, hc_eps, pre.data(), post + i * hc, comb + i * hc * hc);
        float* yi = y + i * d;
        for (int64_t c = 0; c < d; ++c) {
            float s = 0.f;
            for (int64_t h = 0; h < hc; ++h) s += pre[h] * xi[h * d + c];
            yi[c] = s;
        }
    }
}

void hc_post(const float* f, const float* res, const float* post, const float* comb, int64_t t, int64_t hc, int64_t d,
             float* out) {
#pragma omp parallel for schedule(static) if (t * hc * d > (1 << 18))
    for (int64_t i = 0; i < t; ++i) {
        const float* fi = f + i * d;
        const float* ri = res + i * hc * d;
        const float* ci = comb + i * hc * hc;
        for (int64_t k = 0; k < hc; ++k) {
            float* o = out + (i * hc + k) * d;
            const float pk = post[i * hc + k];
            for (int64_t c = 0; c < d; ++c) {
                float s = 0.f;
                for (int64_t j = 0; j < hc; ++j) s += ci[j * hc + k] * ri[j * d + c];
                o[c] = pk * fi[c] + s;
            }
        }
    }
}

void hc_head(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale, const float* base,
             float hc_eps, float norm_eps, float* y) {
    const int64_t width = hc * d;
#pragma omp parallel for schedule(static) if (t * hc * d * hc > (1 << 21))
    for (int64_t i = 0; i < t; ++i) {
        const float* xi = x + i * width;
        const float rs = 1.f / std::sqrt(mean_square(xi, width) + norm_eps);
        std::vector<float> pre(static_cast<size_t>(hc));
        for (int64_t h = 0; h < hc; ++h) pre[h] = sigmoid(dot(fn + h * width, xi, width) * rs * scale[0] + base[h]) + hc_eps;
        float* yi = y + i * d;
        for (int64_t c = 0; c < d; ++c) {
            float s = 0.f;
            for (int64_t h = 0; h < hc; ++h) s += pre[h] * xi[h * d + c];
            yi[c] = s;
        }
    }
}

void embed(const ops::Weight& table, const int32_t* ids, int64_t t, float* out) {
    for (int64_t i = 0; i < t; ++i) linear_row_decode(table, ids[i], out + i * table.k);
}

void compress_pool(const float* kv, const float* score, int64_t ratio, int64_t d, bool overlap, float* z) {
    const int64_t coff = overlap ? 2 : 1, width = coff * d, nrows = coff * ratio;
    for (int64_t c = 0; c < d; ++c) {
        float m = kNegInf;
        for (int64_t r = 0; r < nrows; ++r) {
            const int64_t col = (overlap && r >= ratio) ? d + c : c;
            m = std::max(m, score[r * width + col]);
        }
        float s = 0.f;
        for (int64_t r = 0; r < nrows; ++r) {
            const int64_t col = (overlap && r >= ratio) ? d + c : c;
            s += std::exp(score[r * width + col] - m);
        }
        float acc = 0.f;
        for (int64_t r = 0; r < nrows; ++r) {
            const int64_t col = (overlap && r >= ratio) ? d + c : c;
            const float w = std::exp(score[r * width + col] - m) / s;
            if (w != 0.f) acc += kv[r * width + col] * w;
        }
        z[c] = acc;
    }
}

void index_scores(const float* q, const float* w, int64_t t, int64_t h, int64_t dh, const float* keys, int64_t n,
                  const int32_t* valid, float* scores) {
#pragma omp parallel for schedule(static) collapse(2) if (t * n * h * dh > (1 << 21))
    for (int64_t i = 0; i < t; ++i)
        for (int64_t j = 0; j < n; ++j) {
            if (j >= valid[i]) {
                scores[i * n + j] = kNegInf;
                continue;
            }
            float s = 0.f;
            for (int64_t hh = 0; hh < h; ++hh) {
                const float v = dot(q + (i * h + hh) * dh, keys + j * dh, dh);
                s += w[i * h + hh] * std::max(v, 0.f);
            }
            scores[i * n + j] = s;
        }
}

// Selection with the exact tie behaviour of PyTorch's CPU topk (largest, sorted): (value, index)
// pairs in index order, std::partial_sort when k*64 <= n, else std::nth_element and a sort of the
// first k-1. Indexer scores tie exactly (all heads ReLU'd to zero), so the choice among ties matters.
void topk_torch_order(const float* s, int64_t n, int64_t k, int32_t* out) {
    using Elem = std::pair<double, int64_t>;
    std::vector<Elem> q(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) q[size_t(j)] = {double(s[j]), j};
    auto greater = [](const Elem& x, const Elem& y) {
        return (std::isnan(x.first) && !std::isnan(y.first)) || x.first > y.first;
    };
    if (k * 64 <= n) {
        std::partial_sort(q.begin(), q.begin() + k, q.end(), greater);
    } else {
        std::nth_element(q.begin(), q.begin() + k - 1, q.end(), greater);
        std::sort(q.begin(), q.begin() + k - 1, greater);
    }
    for (int64_t j = 0; j < k; ++j) out[j] = int32_t(q[size_t(j)].second);
}

void topk(const float* scores, int64_t t, int64_t n, const int32_t* valid, int64_t k, int32_t* idx) {
#pragma omp parallel for schedule(static) if (t * n > (1 << 16))
    for (int64_t i = 0; i < t; ++i) {
        const float* s = scores + i * n;
        int32_t* o = idx + i * k;
        const int64_t ni = valid ? std::min<int64_t>(n, valid[i]) : n;
        const int64_t kk = std::min(k, ni);
        if (kk > 0) topk_torch_order(s, ni, kk, o);
        for (int64_t j = 0; j < k; ++j)
            if (j >= kk || s[o[j]] == kNegInf) o[j] = -1;
    }
}

void sparse_attn(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                 const int32_t* idx, int64_t nk, const float* sink, float scale, float* out) {
#pragma omp parallel if (t * h * nk * d > (1 << 21))
    {
        std::vector<float> p(static_cast<size_t>(nk));
#pragma omp for schedule(static) collapse(2)
        for (int64_t i = 0; i < t; ++i)
            for (int64_t hh = 0; hh < h; ++hh) {
                const float* qi = q + (i * h + hh) * d;
                const int32_t* ix = idx + i * nk;
                float m = kNegInf;
                for (int64_t j = 0; j < nk; ++j) {
                    if (ix[j] < 0) {
                        p[j] = kNegInf;
                        continue;
                    }
                    const float* key = ix[j] < na ? kv_a + int64_t(ix[j]) * d : kv_b + (int64_t(ix[j]) - na) * d;
                    p[j] = dot(qi, key, d) * scale;
                    m = std::max(m, p[j]);
                }
                float* o = out + (i * h + hh) * d;
                std::fill(o, o + d, 0.f);
                if (m == kNegInf) continue;
                float z = 0.f;
                for (int64_t j = 0; j < nk; ++j) {
                    p[j] = ix[j] < 0 ? 0.f : std::exp(p[j] - m);
                    z += p[j];
                }
                z += std::exp(sink[hh] - m);
                for (int64_t j = 0; j < nk; ++j) {
                    if (ix[j] < 0) continue;
                    const float* key = ix[j] < na ? kv_a + int64_t(ix[j]) * d : kv_b + (int64_t(ix[j]) - na) * d;
                    const float w = p[j] / z;
                    for (int64_t c = 0; c < d; ++c) o[c] += w * key[c];
                }
            }
    }
}

void moe_route(const float* logits, int64_t t, int64_t e, const float* bias, const int32_t* hash_ids, int64_t k,
               float route_scale, int32_t* ids, float* w) {
    std::vector<float> sc(static_cast<size_t>(e)), sel(static_cast<size_t>(e));
    for (int64_t i = 0; i < t; ++i) {
        for (int64_t j = 0; j < e; ++j) {
            const float x = logits[i * e + j];
            const float sp = x > 20.f ? x : std::log1p(std::exp(x));
            sc[j] = std::sqrt(sp);
            sel[j] = bias ? sc[j] + bias[j] : sc[j];
        }
        int32_t* id = ids + i * k;
        if (hash_ids) {
            for (int64_t j = 0; j < k; ++j) id[j] = hash_ids[i * k + j];
        } else {
            topk_torch_order(sel.data(), e, k, id);
        }
        float s = 0.f;
        for (int64_t j = 0; j < k; ++j) s += sc[id[j]];
        for (int64_t j = 0; j < k; ++j) w[i * k + j] = sc[id[j]] / s * route_scale;
    }
}

void swiglu(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit, const float* row_w,
            float* h) {
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < n; ++c) {
            float g = gate[r * ld + c], u = up[r * ld + c];
            if (limit > 0.f) {
                u = std::clamp(u, -limit, limit);
                g = std::min(g, limit);
            }
            float v = g / (1.f + std::exp(-g)) * u;
            if (row_w) v = row_w[r] * v;
            h[r * n + c] = v;
        }
    }
}

}  // namespace dsinfer::cpu

namespace dsinfer::ops {
const Backend& cpu_backend() {
    static const Backend b = {
        "cpu",          cpu::linear,      cpu::act_quant,     cpu::fp4_quant, cpu::hadamard,
        cpu::rmsnorm,   cpu::rope,        cpu::hc_pre,        cpu::hc_post,   cpu::hc_head,
        cpu::embed,     cpu::compress_pool, cpu::index_scores, cpu::topk,     cpu::sparse_attn,
        cpu::moe_route, cpu::swiglu,
    };
    return b;
}
}  // namespace dsinfer::ops

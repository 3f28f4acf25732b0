#include "model/replay.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"

namespace dsinfer {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

const FloatArray& need(const TensorMap& m, const std::string& name, const std::string& path) {
    auto it = m.find(name);
    if (it == m.end()) throw Error(path + ": missing tensor '" + name + "'");
    return it->second;
}

}  // namespace

TensorMap read_tensor_map(const std::string& path) {
    SafeTensorsFile f(path);
    TensorMap m;
    for (const TensorInfo& t : f.tensors()) {
        FloatArray a;
        a.shape = t.shape;
        const int64_t n = t.numel();
        a.data.resize(static_cast<size_t>(n));
        if (t.dtype == DType::F32) {
            std::memcpy(a.data.data(), t.data, size_t(n) * 4);
        } else if (t.dtype == DType::I32) {
            const int32_t* p = reinterpret_cast<const int32_t*>(t.data);
            for (int64_t i = 0; i < n; ++i) a.data[i] = float(p[i]);
        } else if (t.dtype == DType::I64) {
            const int64_t* p = reinterpret_cast<const int64_t*>(t.data);
            for (int64_t i = 0; i < n; ++i) a.data[i] = float(p[i]);
        } else {
            throw Error(path + ": tensor '" + t.name + "' has dtype " + std::string(dtype_name(t.dtype)) +
                        ", expected F32 or I32");
        }
        m[t.name] = std::move(a);
    }
    return m;
}

void write_tensor_map(const std::string& path, const TensorMap& m, const std::map<std::string, std::string>& metadata) {
    std::vector<TensorToWrite> ts;
    for (const auto& [name, a] : m) ts.push_back({name, DType::F32, a.shape, a.data.data(), a.data.size() * 4});
    write_safetensors(path, ts, metadata);
}

TensorMap replay_cases(Dsv4Model& model, const std::string& cases_path, const ReplayOptions& opts) {
    const ModelConfig& c = model.config();
    const TensorMap in = read_tensor_map(cases_path);
    const int64_t hc = c.hc_mult, D = c.dim, V = c.vocab_size, L = c.n_layers;
    TensorMap out;
    for (const auto& [name, tok] : in) {
        if (!ends_with(name, ".tokens")) continue;
        const std::string C = name.substr(0, name.size() - 7);
        const FloatArray& pl = need(in, C + ".prompt_len", cases_path);
        std::vector<int32_t> tokens(tok.data.size());
        for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(tok.data[i]);
        const int64_t prompt = int64_t(pl.data.at(0));
        const int64_t total = int64_t(tokens.size());
        if (prompt <= 0 || prompt > total)
            throw Error(cases_path + ": case '" + C + "' has prompt_len " + std::to_string(prompt) + " for " +
                        std::to_string(total) + " tokens");
        const int64_t steps = total - prompt;
        const bool want_hidden = in.count(C + ".prefill.hidden.0") > 0 || in.count(C + ".decode.hidden.0") > 0;
        const bool want_mtp = in.count(C + ".mtp.logits") > 0 && c.n_mtp_layers > 0;
        bool layerwise = opts.layerwise && want_hidden;
        if (layerwise)
            for (int64_t l = 0; l + 1 < L; ++l) {
                const FloatArray& a = need(in, C + ".prefill.hidden." + std::to_string(l), cases_path);
                const FloatArray& b = steps ? need(in, C + ".decode.hidden." + std::to_string(l), cases_path) : a;
                if (a.data.size() != size_t(prompt * hc * D) || (steps && b.data.size() != size_t(steps * hc * D)))
                    throw Error(cases_path + ": hidden states of case '" + C + "' do not match the model's shape");
            }
        // Layer inputs of rows [row0, row0 + len) of a phase ("prefill"/"decode").
        auto inputs_for = [&](const std::string& phase, int64_t row0) {
            std::vector<const float*> v(static_cast<size_t>(L), nullptr);
            for (int64_t l = 1; l < L; ++l)
                v[size_t(l)] = in.at(C + "." + phase + ".hidden." + std::to_string(l - 1)).data.data() + row0 * hc * D;
            return v;
        };

        auto st = model.new_sequence();
        FloatArray pre_logits{{prompt, V}, {}}, dec_logits{{steps, V}, {}};
        std::vector<FloatArray> pre_hidden(static_cast<size_t>(L)), dec_hidden(static_cast<size_t>(L));
        std::vector<float> final_hidden;  // pre-hc_head residual of the prompt [prompt, hc, D]
        const int64_t chunk = opts.chunk > 0 ? opts.chunk : prompt;
        for (int64_t p0 = 0; p0 < prompt; p0 += chunk) {
            const int64_t len = std::min(chunk, prompt - p0);
            std::vector<float> logits, fh;
            std::vector<std::vector<float>> lh;
            std::vector<const float*> li;
            ForwardItem it;
            it.state = st.get();
            it.tokens = std::span<const int32_t>(tokens.data() + p0, size_t(len));
            it.all_logits = true;
            it.logits_out = &logits;
            it.final_hidden = &fh;
            if (want_hidden) it.layer_hidden = &lh;
            if (layerwise) {
                li = inputs_for("prefill", p0);
                it.layer_inputs = &li;
            }
            model.forward(std::span<ForwardItem>(&it, 1));
            pre_logits.data.insert(pre_logits.data.end(), logits.begin(), logits.end());
            final_hidden.insert(final_hidden.end(), fh.begin(), fh.end());
            for (int64_t l = 0; want_hidden && l < L; ++l)
                pre_hidden[size_t(l)].data.insert(pre_hidden[size_t(l)].data.end(), lh[size_t(l)].begin(),
                                                  lh[size_t(l)].end());
        }
        for (int64_t s = 0; s < steps; ++s) {
            std::vector<float> logits;
            std::vector<std::vector<float>> lh;
            std::vector<const float*> li;
            ForwardItem it;
            it.state = st.get();
            it.tokens = std::span<const int32_t>(tokens.data() + prompt + s, 1);
            it.logits_out = &logits;
            if (want_hidden) it.layer_hidden = &lh;
            if (layerwise) {
                li = inputs_for("decode", s);
                it.layer_inputs = &li;
            }
            model.forward(std::span<ForwardItem>(&it, 1));
            dec_logits.data.insert(dec_logits.data.end(), logits.begin(), logits.end());
            for (int64_t l = 0; want_hidden && l < L; ++l)
                dec_hidden[size_t(l)].data.insert(dec_hidden[size_t(l)].data.end(), lh[size_t(l)].begin(),
                                                  lh[size_t(l)].end());
        }
        out[C + ".prefill.logits"] = std::move(pre_logits);
        if (steps) out[C + ".decode.logits"] = std::move(dec_logits);
        for (int64_t l = 0; want_hidden && l < L; ++l) {
            pre_hidden[size_t(l)].shape = {prompt, hc, D};
            out[C + ".prefill.hidden." + std::to_string(l)] = std::move(pre_hidden[size_t(l)]);
            if (steps) {
                dec_hidden[size_t(l)].shape = {steps, hc, D};
                out[C + ".decode.hidden." + std::to_string(l)] = std::move(dec_hidden[size_t(l)]);
            }
        }
        if (want_mtp && prompt > 1) {
            // The MTP block as a prefill: hidden of positions 0..prompt-2 with tokens 1..prompt-1.
            const float* hidden = final_hidden.data();
            if (layerwise) hidden = in.at(C + ".prefill.hidden." + std::to_string(L - 1)).data.data();
            FloatArray mtp{{prompt - 1, V}, {}};
            for (int64_t p0 = 0; p0 < prompt - 1; p0 += chunk) {
                const int64_t len = std::min(chunk, prompt - 1 - p0);
                std::vector<float> logits;
                MtpItem it;
                it.state = st.get();
                it.hidden = hidden + p0 * hc * D;
                it.tokens = std::span<const int32_t>(tokens.data() + 1 + p0, size_t(len));
                it.all_logits = true;
                it.logits_out = &logits;
                model.forward_mtp(std::span<MtpItem>(&it, 1));
                mtp.data.insert(mtp.data.end(), logits.begin(), logits.end());
            }
            out[C + ".mtp.logits"] = std::move(mtp);
        }
    }
    return out;
}

std::vector<CompareLine> compare_outputs(const TensorMap& golden, const TensorMap& out, bool noquant, bool layerwise) {
    std::vector<CompareLine> lines;
    const double kl_bar = noquant ? 2e-3 : 1e-2, am_bar = noquant ? 0.97 : 0.90;
    for (const auto& [name, g] : golden) {
        const bool is_logits = ends_with(name, ".logits");
        const bool is_hidden = name.find(".hidden.") != std::string::npos;
        if (!is_logits && !is_hidden) continue;
        CompareLine ln;
        ln.name = name;
        ln.what = is_logits ? "kl" : "rel_l2";
        ln.checked = is_logits || layerwise;
        auto it = out.find(name);
        if (it == out.end() || it->second.data.size() != g.data.size() || g.shape.empty()) {
            ln.pass = !ln.checked;
            ln.message = it == out.end() ? "missing in the output" : "shape differs from the golden";
            lines.push_back(ln);
            continue;
        }
        const FloatArray& e = it->second;
        const int64_t rows = g.shape[0];
        const int64_t width = int64_t(g.data.size()) / std::max<int64_t>(rows, 1);
        if (is_logits) {
            double kl_sum = 0;
            int64_t agree = 0;
            for (int64_t r = 0; r < rows; ++r) {
                const float* a = g.data.data() + r * width;
                const float* b = e.data.data() + r * width;
                const double ma = *std::max_element(a, a + width), mb = *std::max_element(b, b + width);
                double za = 0, zb = 0;
                for (int64_t i = 0; i < width; ++i) {
                    za += std::exp(double(a[i]) - ma);
                    zb += std::exp(double(b[i]) - mb);
                }
                const double lza = std::log(za), lzb = std::log(zb);
                double kl = 0;
                for (int64_t i = 0; i < width; ++i) {
                    const double la = double(a[i]) - ma - lza, lb = double(b[i]) - mb - lzb;
                    kl += std::exp(la) * (la - lb);
                }
                kl_sum += kl;
                agree += (std::max_element(a, a + width) - a) == (std::max_element(b, b + width) - b);
            }
            ln.v1 = kl_sum / double(rows);
            ln.v2 = double(agree) / double(rows);
            ln.pass = std::isfinite(ln.v1) && ln.v1 <= kl_bar && ln.v2 >= am_bar;
        } else {
            std::vector<double> rel(static_cast<size_t>(rows));
            for (int64_t r = 0; r < rows; ++r) {
                double num = 0, den = 0;
                for (int64_t i = 0; i < width; ++i) {
                    const double d = double(e.data[r * width + i]) - double(g.data[r * width + i]);
                    num += d * d;
                    den += double(g.data[r * width + i]) * double(g.data[r * width + i]);
                }
                rel[size_t(r)] = std::sqrt(num / std::max(den, 1e-300));
            }
            std::vector<double> sorted = rel;
            std::sort(sorted.begin(), sorted.end());
            ln.v1 = rows ? (rows % 2 ? sorted[size_t(rows / 2)]
                                     : 0.5 * (sorted[size_t(rows / 2 - 1)] + sorted[size_t(rows / 2)]))
                         : 0;
            ln.v2 = double(std::count_if(rel.begin(), rel.end(), [](double v) { return v <= 1e-3; })) /
                    double(std::max<int64_t>(rows, 1));
            ln.pass = !ln.checked || (std::isfinite(ln.v1) && ln.v1 <= 1e-5 && ln.v2 >= 0.85);
        }
        lines.push_back(ln);
    }
    return lines;
}

std::string format_compare(const std::vector<CompareLine>& lines) {
    std::ostringstream o;
    char buf[256];
    for (const auto& l : lines) {
        if (!l.message.empty())
            std::snprintf(buf, sizeof buf, "%-26s %s%s\n", l.name.c_str(), l.message.c_str(),
                          l.checked ? "  FAIL" : "");
        else if (l.what == "kl")
            std::snprintf(buf, sizeof buf, "%-26s mean KL %.3e  argmax %.4f  %s\n", l.name.c_str(), l.v1, l.v2,
                          l.pass ? "ok" : "FAIL");
        else
            std::snprintf(buf, sizeof buf, "%-26s median rel L2 %.3e  <=1e-3: %.4f  %s\n", l.name.c_str(), l.v1,
                          l.v2, !l.checked ? "(info)" : l.pass ? "ok" : "FAIL");
        o << buf;
    }
    return o.str();
}

}  // namespace dsinfer

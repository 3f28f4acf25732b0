#include "model/generate.h"

#include <chrono>

#include "core/error.h"

namespace dsinfer {

namespace {
int32_t argmax(const float* v, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; ++i)
        if (v[i] > v[b]) b = i;
    return int32_t(b);
}
using Clock = std::chrono::steady_clock;
}  // namespace

std::vector<int32_t> greedy_generate(Dsv4Model& model, std::span<const int32_t> prompt, const GreedyOptions& opts,
                                     const std::function<void(int32_t)>& on_token, GreedyStats* stats) {
    const ModelConfig& cfg = model.config();
    const int64_t V = cfg.vocab_size;
    if (prompt.empty()) throw Error("generate: the prompt is empty");
    if (opts.speculative && cfg.n_mtp_layers == 0)
        throw Error("generate: the model has no MTP block; speculative decoding needs one");
    GreedyStats local;
    GreedyStats& st = stats ? *stats : local;
    std::vector<int32_t> out;
    auto seq = model.new_sequence();

    std::vector<float> logits, hidden;
    ForwardItem it;
    it.state = seq.get();
    it.tokens = prompt;
    it.logits_out = &logits;
    if (opts.speculative) it.final_hidden = &hidden;
    auto t0 = Clock::now();
    model.forward(std::span<ForwardItem>(&it, 1));
    st.prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
    it.final_hidden = nullptr;
    t0 = Clock::now();

    // Emits a token; true when generation is over.
    auto emit = [&](int32_t id) {
        out.push_back(id);
        if (on_token) on_token(id);
        return (opts.stop_at_eos && id == cfg.eos_token_id) || int64_t(out.size()) >= opts.max_tokens;
    };
    int32_t next = argmax(logits.data(), V);
    if (opts.max_tokens <= 0) return out;
    if (!opts.speculative) {
        while (!emit(next)) {
            it.tokens = std::span<const int32_t>(&next, 1);
            model.forward(std::span<ForwardItem>(&it, 1));
            ++st.main_steps;
            next = argmax(logits.data(), V);
        }
    } else if (!emit(next)) {
        std::vector<int32_t> history(prompt.begin(), prompt.end());
        history.push_back(next);
        std::vector<float> mtp_logits;
        // The MTP block at positions [mtp_position, +n): residual rows h, each with the token after it.
        auto mtp_step = [&](const float* h, std::span<const int32_t> toks) {
            MtpItem mi;
            mi.state = seq.get();
            mi.hidden = h;
            mi.tokens = toks;
            mi.logits_out = &mtp_logits;
            model.forward_mtp(std::span<MtpItem>(&mi, 1));
            return opts.draft_override ? opts.draft_override(history) : argmax(mtp_logits.data(), V);
        };
        std::vector<int32_t> mtp_toks(prompt.begin() + 1, prompt.end());
        mtp_toks.push_back(next);
        int32_t t = next;
        int32_t draft = mtp_step(hidden.data(), mtp_toks);
        std::vector<float> vlogits, vhidden;
        while (true) {
            const int32_t pair[2] = {t, draft};
            SequenceMark mark = seq->mark(2);
            ForwardItem v;
            v.state = seq.get();
            v.tokens = std::span<const int32_t>(pair, 2);
            v.all_logits = true;
            v.logits_out = &vlogits;
            v.final_hidden = &vhidden;
            model.forward(std::span<ForwardItem>(&v, 1));
            ++st.main_steps;
            ++st.drafts;
            const int32_t a = argmax(vlogits.data(), V);
            if (a == draft) {
                ++st.accepted;
                const int32_t b = argmax(vlogits.data() + V, V);
                history.push_back(a);
                if (emit(a)) break;
                history.push_back(b);
                if (emit(b)) break;
                const int32_t mt[2] = {a, b};
                draft = mtp_step(vhidden.data(), std::span<const int32_t>(mt, 2));
                t = b;
            } else {
                // Keep t, undo the draft: back to the mark, then t alone (its row is computed the same
                // way alone as beside the draft, so the logits a came from stay valid).
                seq->rollback(mark);
                ForwardItem r;
                r.state = seq.get();
                r.tokens = std::span<const int32_t>(&t, 1);
                model.forward(std::span<ForwardItem>(&r, 1));
                ++st.main_steps;
                history.push_back(a);
                if (emit(a)) break;
                draft = mtp_step(vhidden.data(), std::span<const int32_t>(&a, 1));
                t = a;
            }
        }
    }
    st.decode_s = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
}

}  // namespace dsinfer

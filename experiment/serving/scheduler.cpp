#include "experiment/serving/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "sim/config/error.h"
#include "sim/config/limits.h"
#include "sim/core/check.h"

namespace mlsim::serving {

double uniform01(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

double exponential(uint64_t bits, double rate) { return -std::log1p(-uniform01(bits)) / rate; }

namespace {

[[noreturn]] void trace_fail(const std::string& path, int line, int col, const std::string& msg) {
    cfg::fail(cfg::SourceLoc{path, line, col}, "trace", msg);
}

std::string trim(std::string s) {
    const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!s.empty() && ws(s.back())) s.pop_back();
    size_t i = 0;
    while (i < s.size() && ws(s[i])) ++i;
    return s.substr(i);
}

std::vector<Request> read_trace(const std::string& path) {
    std::ifstream in(path);
    if (!in) trace_fail(path, 0, 0, "cannot open the trace file");
    std::string line;
    int n = 0;
    std::vector<Request> out;
    bool header = false;
    double last = 0;
    while (std::getline(in, line)) {
        ++n;
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) f.push_back(trim(cell));
        if (!line.empty() && line.back() == ',') f.emplace_back();
        if (!header) {
            if (f != std::vector<std::string>{"arrival_s", "prompt_tokens", "output_tokens"})
                trace_fail(path, n, 1,
                           "the first line must be the header 'arrival_s,prompt_tokens,output_tokens'");
            header = true;
            continue;
        }
        if (f.size() != 3) trace_fail(path, n, 1, fmt::format("expected 3 fields, got {}", f.size()));
        Request r;
        r.id = static_cast<int64_t>(out.size());
        r.line = n;
        int col = 1;
        const auto num = [&](const std::string& s, const char* what) {
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v))
                trace_fail(path, n, col, fmt::format("{} '{}' is not a number", what, s));
            return v;
        };
        r.arrival_s = num(f[0], "arrival_s");
        if (r.arrival_s < 0) trace_fail(path, n, col, "arrival_s must not be negative");
        // Beyond it a request's milliseconds vanish when added to its arrival time (double precision).
        if (r.arrival_s > limits::max_simulated_s)
            trace_fail(
                path, n, col,
                fmt::format("arrival_s {} is beyond the simulated-time limit of {:.3g} s (about 106 days)",
                            r.arrival_s, limits::max_simulated_s));
        if (r.arrival_s < last)
            trace_fail(path, n, col,
                       fmt::format("arrival_s {} is before the previous row's {}", r.arrival_s, last));
        last = r.arrival_s;
        col = static_cast<int>(f[0].size()) + 2;
        const auto count = [&](const std::string& s, const char* what) {
            const double v = num(s, what);
            if (v < 1 || v != std::floor(v) || v > 1e9)
                trace_fail(path, n, col,
                           fmt::format("{} must be a whole number from 1 to 10^9, got '{}'", what, s));
            return static_cast<int64_t>(v);
        };
        r.prompt_tokens = count(f[1], "prompt_tokens");
        col += static_cast<int>(f[1].size()) + 1;
        r.output_tokens = count(f[2], "output_tokens");
        out.push_back(r);
    }
    if (!header) trace_fail(path, n, 0, "empty trace: no header 'arrival_s,prompt_tokens,output_tokens'");
    if (out.empty()) trace_fail(path, n, 0, "the trace has no requests");
    return out;
}

}  // namespace

std::vector<Request> make_requests(const RequestSource& src) {
    if (!src.trace.empty()) return read_trace(src.trace);
    MLSIM_CHECK(src.count > 0 && !src.prompt_tokens.empty() && !src.output_tokens.empty() && src.rate >= 0,
                "serving: bad request source");
    std::mt19937_64 rng(src.seed);
    std::vector<Request> out;
    out.reserve(static_cast<size_t>(src.count));
    double t = 0;
    for (int64_t i = 0; i < src.count; ++i) {
        if (src.rate > 0) t += exponential(rng(), src.rate);
        Request r;
        r.id = i;
        r.arrival_s = t;
        r.prompt_tokens = src.prompt_tokens[static_cast<size_t>(i) % src.prompt_tokens.size()];
        r.output_tokens = src.output_tokens[static_cast<size_t>(i) % src.output_tokens.size()];
        out.push_back(r);
    }
    // Beyond the limit a request's milliseconds vanish when added to its arrival time (double precision).
    if (t > limits::max_simulated_s)
        cfg::fail(
            cfg::SourceLoc{"<command line>", 0, 0}, "--rate",
            fmt::format("{} requests at {} req/s arrive over about {:.3g} s, beyond the simulated-time limit "
                        "of {:.3g} s (about 106 days): raise the rate or send fewer requests",
                        src.count, src.rate, t, limits::max_simulated_s));
    return out;
}

Percentiles percentiles(std::vector<double> v) {
    Percentiles p;
    p.count = v.size();
    if (v.empty()) return p;
    std::sort(v.begin(), v.end());
    double sum = 0;
    for (double x : v) sum += x;
    p.mean = sum / static_cast<double>(v.size());
    const auto rank = [&](double q) {
        const auto k = static_cast<size_t>(std::ceil(q / 100.0 * static_cast<double>(v.size())));
        return v[std::clamp<size_t>(k, 1, v.size()) - 1];
    };
    p.p50 = rank(50);
    p.p90 = rank(90);
    p.p99 = rank(99);
    return p;
}

namespace {

struct Seq {
    size_t idx = 0;         // into the results (arrival order)
    int64_t target = 0;     // tokens to prefill: prompt + tokens generated before a preemption
    int64_t prefilled = 0;  // of target, in the cache
    int64_t kv = 0;         // tokens in the KV cache
    int64_t generated = 0;  // output tokens so far
    int64_t blocks = 0;     // KV blocks held
    bool prefill_done() const { return prefilled >= target; }
};

int64_t blocks_for(int64_t tokens, int64_t block) { return (tokens + block - 1) / block; }

}  // namespace

ServingResult serve(IterationModel& model, std::vector<Request> requests, const SchedulerOptions& opt) {
    MLSIM_CHECK(
        opt.block >= 1 && opt.max_batch >= 1 && opt.max_batched_tokens >= 1 && opt.chunked_prefill >= 0,
        "serving: bad scheduler options");
    std::stable_sort(requests.begin(), requests.end(), [](const Request& a, const Request& b) {
        return a.arrival_s < b.arrival_s || (a.arrival_s == b.arrival_s && a.id < b.id);
    });
    ServingResult res;
    const double block_bytes = static_cast<double>(opt.block) * model.kv_bytes_per_token();
    // Pipeline stages: one scheduler (virtual engine) per stage, each with 1/P of the blocks (see
    // experiment/serving/pipeline.h for the schedule and its source).
    const int64_t stages = model.stages();
    MLSIM_CHECK(stages >= 1, "serving: a model without stages");
    const auto engine_blocks =
        static_cast<int64_t>(std::floor(model.kv_capacity_bytes() / block_bytes)) / stages;
    res.total_blocks = engine_blocks * stages;
    const cfg::SourceLoc cl{"<command line>", 0, 0};
    const bool chunked = opt.chunked_prefill > 0;
    const int64_t budget = chunked ? opt.chunked_prefill : opt.max_batched_tokens;
    for (const Request& r : requests) {
        const int64_t peak = r.prompt_tokens + r.output_tokens - 1;  // tokens cached when it finishes
        if (blocks_for(peak, opt.block) > engine_blocks)
            cfg::fail(
                cl, "--requests",
                fmt::format("request {} (prompt {} + output {} tokens) needs {} KV blocks of {} tokens; "
                            "the cache holds {} ({:.3f} GB){}",
                            r.id, r.prompt_tokens, r.output_tokens, blocks_for(peak, opt.block), opt.block,
                            engine_blocks, model.kv_capacity_bytes() / 1e9,
                            stages > 1 ? fmt::format(" per pipeline scheduler ({} of them)", stages)
                                       : std::string()));
        if (!chunked && peak > budget)
            cfg::fail(
                cl, "--max-tokens",
                fmt::format("request {} may need a prefill of {} tokens (prompt {} + output {} − 1, after a "
                            "preemption) above the {} batched tokens per iteration; raise --max-tokens or "
                            "use --chunked-prefill",
                            r.id, peak, r.prompt_tokens, r.output_tokens, budget));
    }
    res.requests.resize(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) res.requests[i].req = requests[i];
    if (requests.empty()) return res;

    struct Engine {
        std::deque<Seq> waiting;
        std::vector<Seq> running;  // in arrival order: the last is the youngest
        int64_t free_blocks = 0;
        double ready = 0;  // its previous micro-batch has left the last stage
        bool busy() const { return !waiting.empty() || !running.empty(); }
    };
    std::vector<Engine> engines(static_cast<size_t>(stages));
    const double t0 = requests.front().arrival_s;
    for (Engine& e : engines) {
        e.free_blocks = engine_blocks;
        e.ready = t0;
    }
    std::vector<double> stage_free(static_cast<size_t>(stages), t0),
        stage_busy(static_cast<size_t>(stages), 0);
    size_t next = 0;
    double now = t0, end = t0;
    size_t finished = 0;
    std::vector<OccupancySample> samples;
    double occ_integral = 0;
    std::vector<IterationModel::StageCost> sc;
    const auto used_blocks = [&] {
        int64_t u = 0;
        for (const Engine& e : engines) u += engine_blocks - e.free_blocks;
        return u;
    };
    const auto counts = [&](auto member) {
        int64_t n = 0;
        for (const Engine& e : engines) n += static_cast<int64_t>((e.*member).size());
        return n;
    };

    while (finished < requests.size()) {
        // The engine whose next micro-batch starts first (the lowest index on ties); arrivals up to that
        // time join first, each the engine with the fewest unfinished requests (vLLM).
        size_t pick = engines.size();
        for (size_t i = 0; i < engines.size(); ++i)
            if (engines[i].busy() && (pick == engines.size() || engines[i].ready < engines[pick].ready))
                pick = i;
        const double start = pick < engines.size() ? std::max(engines[pick].ready, stage_free[0])
                                                   : std::numeric_limits<double>::infinity();
        if (next < requests.size() && requests[next].arrival_s <= start) {
            size_t to = 0;
            for (size_t i = 1; i < engines.size(); ++i)
                if (engines[i].waiting.size() + engines[i].running.size() <
                    engines[to].waiting.size() + engines[to].running.size())
                    to = i;
            Engine& e = engines[to];
            if (!e.busy()) e.ready = std::max(e.ready, requests[next].arrival_s);
            Seq s;
            s.idx = next;
            s.target = requests[next].prompt_tokens;
            e.waiting.push_back(s);
            ++next;
            continue;
        }
        MLSIM_CHECK(pick < engines.size(), "serving: no work and no arrival left");
        now = start;
        Engine& eng = engines[pick];
        std::deque<Seq>& waiting = eng.waiting;
        std::vector<Seq>& running = eng.running;
        int64_t& free_blocks = eng.free_blocks;
        const auto insert_running = [&](Seq s) {
            auto it = std::upper_bound(running.begin(), running.end(), s.idx,
                                       [](size_t idx, const Seq& o) { return idx < o.idx; });
            running.insert(it, std::move(s));
        };
        const auto preempt = [&](size_t pos) {
            Seq v = running[pos];
            running.erase(running.begin() + static_cast<std::ptrdiff_t>(pos));
            free_blocks += v.blocks;
            res.requests[v.idx].preemptions += 1;
            res.preemptions += 1;
            v.blocks = 0;
            v.kv = 0;
            v.prefilled = 0;
            v.target = requests[v.idx].prompt_tokens + v.generated;
            waiting.push_front(v);
        };
        // Admits waiting requests (FCFS) while their prompts' blocks are free and the batch has room; adds
        // their first chunks to `batch` within `tokens_left`.
        const auto admit = [&](Batch& batch, int64_t& tokens_left, std::vector<size_t>& chunk_of) {
            while (!waiting.empty() && static_cast<int64_t>(running.size()) < opt.max_batch &&
                   tokens_left > 0) {
                Seq& s = waiting.front();
                const int64_t need = blocks_for(s.target, opt.block);
                if (need > free_blocks) break;
                if (!chunked && s.target > tokens_left) break;
                const int64_t c = std::min(s.target, tokens_left);
                s.blocks = need;
                free_blocks -= need;
                batch.prefills.push_back(PrefillChunk{c, 0, c == s.target});
                tokens_left -= c;
                const size_t idx = s.idx;
                insert_running(s);
                waiting.pop_front();
                chunk_of.push_back(idx);
            }
        };

        Batch batch;
        std::vector<size_t> chunk_of;   // result index of each prefill chunk, in batch order
        std::vector<size_t> decode_of;  // result index of each decode sequence
        int64_t tokens_left = budget;
        if (!chunked) {
            admit(batch, tokens_left, chunk_of);
            if (batch.prefills.empty()) {
                // One decode step of every running sequence, preempting the youngest when a block is missing.
                for (size_t i = 0; i < running.size();) {
                    Seq& s = running[i];
                    if (blocks_for(s.kv + 1, opt.block) > s.blocks) {
                        if (free_blocks == 0) {
                            preempt(running.size() - 1);
                            continue;  // retry this sequence (or stop if it was the victim)
                        }
                        s.blocks += 1;
                        free_blocks -= 1;
                    }
                    batch.decode_context.push_back(s.kv);
                    decode_of.push_back(s.idx);
                    ++i;
                }
            }
        } else {
            // Decodes first, then the running prompts' next chunks, then new prompts (vLLM's chunked policy).
            for (size_t i = 0; i < running.size() && tokens_left > 0;) {
                Seq& s = running[i];
                if (!s.prefill_done()) {
                    ++i;
                    continue;
                }
                if (blocks_for(s.kv + 1, opt.block) > s.blocks) {
                    if (free_blocks == 0) {
                        preempt(running.size() - 1);
                        continue;
                    }
                    s.blocks += 1;
                    free_blocks -= 1;
                }
                batch.decode_context.push_back(s.kv);
                decode_of.push_back(s.idx);
                tokens_left -= 1;
                ++i;
            }
            for (Seq& s : running) {
                if (s.prefill_done() || tokens_left == 0) continue;
                const int64_t c = std::min(s.target - s.prefilled, tokens_left);
                batch.prefills.push_back(PrefillChunk{c, s.prefilled, s.prefilled + c == s.target});
                chunk_of.push_back(s.idx);
                tokens_left -= c;
            }
            admit(batch, tokens_left, chunk_of);
        }
        // A busy engine always runs something: with nothing running its queue head fits the empty cache
        // (checked above), and running sequences decode.
        MLSIM_CHECK(!batch.prefills.empty() || !batch.decode_context.empty(),
                    "serving: scheduler stalled with work to do");
        model.stage_costs(batch, sc);
        MLSIM_CHECK(static_cast<int64_t>(sc.size()) == stages, "serving: stage costs of the wrong size");
        // The micro-batch through the stages: each stage takes it when the previous stage (and the send)
        // has delivered it and the stage has finished the micro-batch before it.
        double t = now, busy = 0;
        for (size_t s = 0; s < sc.size(); ++s) {
            const double begin = std::max(t, stage_free[s]);
            const double finish = begin + sc[s].compute.time_s;
            stage_free[s] = finish;
            stage_busy[s] += sc[s].compute.time_s;
            busy += sc[s].compute.time_s;
            res.energy_j += sc[s].compute.energy_j + sc[s].send.energy_j;
            t = s + 1 < sc.size() ? finish + sc[s].send.time_s : finish;
        }
        const double done = t;
        eng.ready = done;
        end = std::max(end, done);
        const int64_t used = used_blocks();
        samples.push_back(OccupancySample{now, used, counts(&Engine::running), counts(&Engine::waiting)});
        // This engine's blocks, held from the decision to its tokens (one stage: the iteration's time).
        occ_integral += static_cast<double>(engine_blocks - free_blocks) * (stages == 1 ? busy : done - now);
        res.max_batch_reached = std::max(res.max_batch_reached, counts(&Engine::running));
        res.iterations += 1;

        // Apply the iteration: prefill chunks advance, decodes add a token; finished sequences leave.
        const auto find = [&](size_t idx) {
            auto it = std::lower_bound(running.begin(), running.end(), idx,
                                       [](const Seq& o, size_t i) { return o.idx < i; });
            MLSIM_CHECK(it != running.end() && it->idx == idx, "serving: lost a running sequence");
            return it;
        };
        const auto emit = [&](Seq& s) {
            s.generated += 1;
            RequestResult& rr = res.requests[s.idx];
            if (s.generated == 1) rr.first_token_s = done;
            if (s.generated == rr.req.output_tokens) rr.finish_s = done;
        };
        for (size_t k = 0; k < chunk_of.size(); ++k) {
            Seq& s = *find(chunk_of[k]);
            s.prefilled += batch.prefills[k].tokens;
            s.kv = s.prefilled;
            if (s.prefill_done()) emit(s);
        }
        for (size_t idx : decode_of) {
            Seq& s = *find(idx);
            s.kv += 1;
            emit(s);
        }
        for (size_t i = 0; i < running.size();) {
            if (running[i].generated == requests[running[i].idx].output_tokens) {
                free_blocks += running[i].blocks;
                running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
                ++finished;
            } else {
                ++i;
            }
        }
    }
    now = end;
    res.stage_busy_s = stage_busy;
    double busy_sum = 0;
    for (double b : stage_busy) busy_sum += b;
    res.busy_s = busy_sum / static_cast<double>(stages);
    res.makespan_s = now - t0;
    for (int64_t st = 0; st < stages; ++st)
        res.energy_j += model.stage_static_power_W(st) *
                        std::max(0.0, res.makespan_s - stage_busy[static_cast<size_t>(st)]);
    std::vector<double> ttft, tpot, e2e;
    for (const RequestResult& r : res.requests) {
        ttft.push_back(r.first_token_s - r.req.arrival_s);
        e2e.push_back(r.finish_s - r.req.arrival_s);
        if (r.req.output_tokens > 1)
            tpot.push_back((r.finish_s - r.first_token_s) / static_cast<double>(r.req.output_tokens - 1));
        res.output_tokens += r.req.output_tokens;
        res.prompt_tokens += r.req.prompt_tokens;
    }
    res.ttft_s = percentiles(ttft);
    res.tpot_s = percentiles(tpot);
    res.e2e_s = percentiles(e2e);
    if (res.makespan_s > 0) {
        res.tokens_per_s = static_cast<double>(res.output_tokens) / res.makespan_s;
        res.requests_per_s = static_cast<double>(requests.size()) / res.makespan_s;
        res.mean_kv_occupancy =
            occ_integral / res.makespan_s / static_cast<double>(std::max<int64_t>(res.total_blocks, 1));
    }
    res.energy_per_token_j =
        res.output_tokens > 0 ? res.energy_j / static_cast<double>(res.output_tokens) : 0;
    for (const OccupancySample& s : samples)
        res.max_kv_occupancy =
            std::max(res.max_kv_occupancy, static_cast<double>(s.used_blocks) /
                                               static_cast<double>(std::max<int64_t>(res.total_blocks, 1)));
    // Keep at most occupancy_samples evenly spaced samples (the first and the last included).
    const auto keep = static_cast<size_t>(std::max<int64_t>(opt.occupancy_samples, 2));
    if (samples.size() <= keep) {
        res.occupancy = std::move(samples);
    } else {
        for (size_t i = 0; i < keep; ++i)
            res.occupancy.push_back(samples[i * (samples.size() - 1) / (keep - 1)]);
    }
    res.simulated_shapes = model.simulated_shapes();
    return res;
}

}  // namespace mlsim::serving

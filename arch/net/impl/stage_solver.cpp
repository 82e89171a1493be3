#include "arch/net/impl/stage_solver.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <string>

#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::arch::net::impl {

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
// Two rates (or times) this close are the same level: progressive filling freezes them together, so that
// the symmetric flows of a collective finish at one instant instead of a few ulps apart.
constexpr double rel_tol = 1e-12;
constexpr uint32_t npos32 = std::numeric_limits<uint32_t>::max();
using Entry = std::pair<double, DirLink>;
}  // namespace

void ReferenceFluidSolver::rates(const std::vector<uint32_t>& active,
                                 const std::vector<StageFlowTiming>& flows,
                                 const std::vector<DirLink>& hops) {
    const std::size_t nres = m_routes.resource_count();
    if (m_cap_left.size() != nres) {
        m_cap_left.assign(nres, 0);
        m_unfrozen.assign(nres, 0);
        m_res_off.assign(nres, 0);
        m_fill.assign(nres, 0);
    }
    m_touched.clear();
    for (uint32_t f : active) {
        m_frozen[f] = 0;
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) {
            const DirLink r = hops[fl.path_off + k];
            if (m_unfrozen[r]++ == 0) {
                m_touched.push_back(r);
                m_cap_left[r] = m_routes.capacity(r);
            }
        }
    }
    // resource -> its active flows: row r is m_res_flows[m_res_off[r] .. m_fill[r])
    uint32_t total = 0;
    for (DirLink r : m_touched) {
        m_res_off[r] = m_fill[r] = total;
        total += m_unfrozen[r];
    }
    m_res_flows.resize(total);
    for (uint32_t f : active) {
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) m_res_flows[m_fill[hops[fl.path_off + k]]++] = f;
    }
    std::size_t left = active.size();
    for (uint32_t f : active)
        if (flows[f].path_len == 0) {
            m_rate[f] = flows[f].cap_Bps > 0 ? flows[f].cap_Bps : inf;
            m_frozen[f] = 1;
            --left;
        }
    auto freeze = [&](uint32_t f, double rate) {
        m_frozen[f] = 1;
        m_rate[f] = rate;
        --left;
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) {
            const DirLink r = hops[fl.path_off + k];
            m_cap_left[r] = std::max(0.0, m_cap_left[r] - rate);
            --m_unfrozen[r];
        }
    };
    // Progressive filling with a min-heap of link shares (cap_left / unfrozen flows), entries refreshed
    // lazily: the least share is the next bottleneck; its flows freeze at that rate, which changes the
    // shares of the other links they cross. Flow caps compete through a second heap.
    using Entry = std::pair<double, DirLink>;
    std::vector<Entry>& heap = m_heap;
    heap.clear();
    for (DirLink r : m_touched) heap.push_back({m_cap_left[r] / m_unfrozen[r], r});
    std::make_heap(heap.begin(), heap.end(), std::greater<>());
    std::vector<std::pair<double, uint32_t>>& caps = m_caps;
    caps.clear();
    for (uint32_t f : active)
        if (!m_frozen[f] && flows[f].cap_Bps > 0) caps.push_back({flows[f].cap_Bps, f});
    std::sort(caps.begin(), caps.end());
    std::size_t next_cap = 0;
    auto freeze_and_push = [&](uint32_t f, double rate) {
        freeze(f, rate);
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) {
            const DirLink r = hops[fl.path_off + k];
            if (m_unfrozen[r] > 0) {
                heap.push_back({m_cap_left[r] / m_unfrozen[r], r});
                std::push_heap(heap.begin(), heap.end(), std::greater<>());
            }
        }
    };
    while (left > 0) {
        while (next_cap < caps.size() && m_frozen[caps[next_cap].second]) ++next_cap;
        // drop stale heap entries
        while (!heap.empty()) {
            const auto [share, r] = heap.front();
            if (m_unfrozen[r] > 0 && share == m_cap_left[r] / m_unfrozen[r]) break;
            std::pop_heap(heap.begin(), heap.end(), std::greater<>());
            heap.pop_back();
        }
        const double level = heap.empty() ? inf : heap.front().first;
        if (next_cap < caps.size() && caps[next_cap].first <= level) {
            freeze_and_push(caps[next_cap].second, caps[next_cap].first);
            continue;
        }
        MLSIM_CHECK(!heap.empty(), "progressive filling found no bottleneck");
        const DirLink r = heap.front().second;
        std::pop_heap(heap.begin(), heap.end(), std::greater<>());
        heap.pop_back();
        for (uint32_t k = m_res_off[r]; k < m_fill[r]; ++k)
            if (!m_frozen[m_res_flows[k]]) freeze_and_push(m_res_flows[k], level);
    }
    for (DirLink r : m_touched) m_unfrozen[r] = 0;
}

void ReferenceFluidSolver::solve(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
                                 std::vector<double>& finish) {
    const std::size_t n = flows.size();
    finish.assign(n, 0);
    m_rate.assign(n, 0);
    m_frozen.assign(n, 0);
    std::vector<double> left(n);
    std::vector<uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return flows[a].start_s < flows[b].start_s; });
    std::vector<uint32_t> active;
    std::size_t next = 0;
    double t = n ? flows[order[0]].start_s : 0;
    for (std::size_t i = 0; i < n; ++i) left[i] = flows[i].bytes;
    while (next < n || !active.empty()) {
        if (active.empty()) t = std::max(t, flows[order[next]].start_s);
        while (next < n && flows[order[next]].start_s <= t) {
            const uint32_t f = order[next++];
            if (flows[f].bytes <= 0) {
                finish[f] = t + flows[f].latency_s;
                continue;
            }
            active.push_back(f);
        }
        if (active.empty()) continue;
        rates(active, flows, hops);
        double dt = inf;
        for (uint32_t f : active) dt = std::min(dt, left[f] / m_rate[f]);
        const double t_arrive = next < n ? flows[order[next]].start_s : inf;
        const bool completes = t + dt <= t_arrive;
        const double t_next = completes ? t + dt : t_arrive;
        const double step = t_next - t;
        std::size_t keep = 0;
        for (uint32_t f : active) {
            const double need = left[f] / m_rate[f];
            if (completes && need <= dt * (1 + rel_tol)) {
                finish[f] = t_next + flows[f].latency_s;
                left[f] = 0;
            } else {
                left[f] = std::max(0.0, left[f] - m_rate[f] * step);
                active[keep++] = f;
            }
        }
        active.resize(keep);
        t = t_next;
    }
}

void FluidSolver::set_rate(uint32_t f, double rate, double t) {
    if (rate == m_rate[f]) return;
    if (m_rate[f] > 0 && t > m_tref[f]) m_left[f] = std::max(0.0, m_left[f] - m_rate[f] * (t - m_tref[f]));
    m_tref[f] = t;
    m_rate[f] = rate;
    ++m_version[f];
    m_finish_heap.push_back({rate > 0 ? t + m_left[f] / rate : inf, f, m_version[f]});
    std::push_heap(m_finish_heap.begin(), m_finish_heap.end(), std::greater<>());
}

void FluidSolver::refill(std::size_t from, double t, const std::vector<StageFlowTiming>& flows,
                         const std::vector<DirLink>& hops) {
    MLSIM_CHECK(from == 0 || m_added.empty(), "a release refills every flow");
    if (++m_epoch == 0) {
        std::fill(m_mark.begin(), m_mark.end(), 0u);
        m_epoch = 1;
    }
    m_touched.clear();
    m_refill.clear();
    // Links keep the spare capacity they had before the first flow frozen from `from` on took its share.
    for (std::size_t i = from; i < m_order.size(); ++i) {
        const uint32_t f = m_order[i];
        const bool active = m_state[f] == 1;
        if (active) m_refill.push_back(f);
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) {
            const DirLink r = hops[fl.path_off + k];
            if (m_mark[r] != m_epoch) {
                m_mark[r] = m_epoch;
                m_touched.push_back(r);
                m_cap_left[r] = m_cap_before[fl.path_off + k];
                m_unfrozen[r] = 0;
            }
            if (active) ++m_unfrozen[r];
        }
    }
    for (uint32_t f : m_added) {
        m_refill.push_back(f);
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) {
            const DirLink r = hops[fl.path_off + k];
            if (m_mark[r] != m_epoch) {
                m_mark[r] = m_epoch;
                m_touched.push_back(r);
                m_cap_left[r] = m_routes.capacity(r);
                m_unfrozen[r] = 0;
            }
            ++m_unfrozen[r];
        }
    }
    m_added.clear();
    m_order.resize(from);
    m_group.resize(from);
    m_refilled += m_refill.size();
    // resource -> its flows to fill: row r is m_res_flows[m_res_off[r] .. m_fill[r])
    uint32_t total = 0;
    for (DirLink r : m_touched) {
        m_res_off[r] = m_fill[r] = total;
        total += m_unfrozen[r];
    }
    m_res_flows.resize(total);
    for (uint32_t f : m_refill) {
        m_frozen[f] = 0;
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) m_res_flows[m_fill[hops[fl.path_off + k]]++] = f;
    }
    std::size_t left = m_refill.size();
    uint32_t group = 0;
    // Progressive filling as ReferenceFluidSolver::rates does it, the next bottleneck being the least
    // (share, link) with share = spare capacity / unfrozen flows; here each link has one entry in an indexed
    // min-heap, moved when its share changes (the same order as the reference's lazily refreshed heap).
    std::vector<Entry>& heap = m_heap;
    heap.clear();
    auto less = [](const Entry& a, const Entry& b) { return a < b; };
    auto place = [&](std::size_t i, const Entry& e) {
        heap[i] = e;
        m_hpos[e.second] = static_cast<uint32_t>(i);
    };
    auto sift_up = [&](std::size_t i) {
        const Entry e = heap[i];
        while (i > 0) {
            const std::size_t parent = (i - 1) / 2;
            if (!less(e, heap[parent])) break;
            place(i, heap[parent]);
            i = parent;
        }
        place(i, e);
    };
    auto sift_down = [&](std::size_t i) {
        const Entry e = heap[i];
        const std::size_t n = heap.size();
        for (;;) {
            std::size_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && less(heap[c + 1], heap[c])) ++c;
            if (!less(heap[c], e)) break;
            place(i, heap[c]);
            i = c;
        }
        place(i, e);
    };
    auto remove = [&](DirLink r) {
        const std::size_t i = m_hpos[r];
        m_hpos[r] = npos32;
        const Entry last = heap.back();
        heap.pop_back();
        if (i == heap.size()) return;
        const bool up = less(last, heap[i]);
        place(i, last);
        if (up)
            sift_up(i);
        else
            sift_down(i);
    };
    for (DirLink r : m_touched) {
        m_hpos[r] = npos32;
        if (m_unfrozen[r] > 0) {
            heap.push_back({m_cap_left[r] / m_unfrozen[r], r});
            m_hpos[r] = static_cast<uint32_t>(heap.size() - 1);
        }
    }
    for (std::size_t i = heap.size() / 2; i-- > 0;) sift_down(i);
    auto freeze = [&](uint32_t f, double rate) {
        m_frozen[f] = 1;
        set_rate(f, rate, t);
        m_pos[f] = static_cast<uint32_t>(m_order.size());
        m_order.push_back(f);
        m_group.push_back(group);
        --left;
        const StageFlowTiming& fl = flows[f];
        for (uint32_t k = 0; k < fl.path_len; ++k) {
            const DirLink r = hops[fl.path_off + k];
            m_cap_before[fl.path_off + k] = m_cap_left[r];
            m_cap_left[r] = std::max(0.0, m_cap_left[r] - rate);
            --m_unfrozen[r];
            if (m_hpos[r] == npos32) continue;
            if (m_unfrozen[r] == 0) {
                remove(r);
                continue;
            }
            const std::size_t i = m_hpos[r];
            const Entry e{m_cap_left[r] / m_unfrozen[r], r};
            const bool up = less(e, heap[i]);
            heap[i] = e;
            if (up)
                sift_up(i);
            else
                sift_down(i);
        }
    };
    std::vector<std::pair<double, uint32_t>>& caps = m_caps;
    caps.clear();
    for (uint32_t f : m_refill)
        if (flows[f].cap_Bps > 0) caps.push_back({flows[f].cap_Bps, f});
    std::sort(caps.begin(), caps.end());
    std::size_t next_cap = 0;
    while (left > 0) {
        while (next_cap < caps.size() && m_frozen[caps[next_cap].second]) ++next_cap;
        const double level = heap.empty() ? inf : heap.front().first;
        group = static_cast<uint32_t>(m_order.size());
        if (next_cap < caps.size() && caps[next_cap].first <= level) {
            freeze(caps[next_cap].second, caps[next_cap].first);
            continue;
        }
        MLSIM_CHECK(!heap.empty(), "progressive filling found no bottleneck");
        const DirLink r = heap.front().second;
        remove(r);
        for (uint32_t k = m_res_off[r]; k < m_fill[r]; ++k)
            if (!m_frozen[m_res_flows[k]]) freeze(m_res_flows[k], level);
    }
}

void FluidSolver::solve(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
                        std::vector<double>& finish) {
    constexpr uint32_t npos = std::numeric_limits<uint32_t>::max();
    const std::size_t n = flows.size();
    // The stage solved last time again, shifted in time (the steps of a ring): the same finish times,
    // shifted.
    const double t0 = n ? std::min_element(flows.begin(), flows.end(),
                                           [](const auto& a, const auto& b) { return a.start_s < b.start_s; })
                              ->start_s
                        : 0;
    if (n > 0 && same_as_last(flows, hops, t0)) {
        finish.resize(n);
        for (std::size_t i = 0; i < n; ++i) finish[i] = t0 + m_last_finish[i];
        m_refilled = 0;
        m_span = *std::max_element(m_last_finish.begin(), m_last_finish.end());
        return;
    }
    finish.assign(n, 0);
    m_rate.assign(n, -1);
    m_left.assign(n, 0);
    m_tref.assign(n, 0);
    m_pos.assign(n, npos);
    m_version.assign(n, 0);
    m_state.assign(n, 0);
    m_frozen.assign(n, 0);
    m_cap_before.assign(hops.size(), 0);
    m_order.clear();
    m_group.clear();
    m_added.clear();
    m_finish_heap.clear();
    m_refilled = 0;
    const std::size_t nres = m_routes.resource_count();
    if (m_cap_left.size() != nres) {
        m_cap_left.assign(nres, 0);
        m_unfrozen.assign(nres, 0);
        m_mark.assign(nres, 0);
        m_res_off.assign(nres, 0);
        m_fill.assign(nres, 0);
        m_hpos.assign(nres, 0);
        m_epoch = 0;
    }
    // Times run from the first release: a stage shifted in time is then solved with the same numbers, so
    // reusing the last answer (above) gives what solving again would.
    m_start.resize(n);
    for (std::size_t i = 0; i < n; ++i) m_start[i] = flows[i].start_s - t0;
    std::vector<uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return m_start[a] < m_start[b]; });
    std::size_t next = 0, active = 0;
    double t = n ? m_start[order[0]] : 0;
    auto stale = [&](const Projected& p) { return m_state[p.flow] != 1 || p.version != m_version[p.flow]; };
    auto pop = [&] {
        std::pop_heap(m_finish_heap.begin(), m_finish_heap.end(), std::greater<>());
        m_finish_heap.pop_back();
    };
    while (next < n || active > 0) {
        if (active == 0) t = std::max(t, m_start[order[next]]);
        while (next < n && m_start[order[next]] <= t) {
            const uint32_t f = order[next++];
            if (flows[f].bytes <= 0) {
                finish[f] = t + flows[f].latency_s;
                m_state[f] = 2;
                continue;
            }
            m_state[f] = 1;
            ++active;
            m_left[f] = flows[f].bytes;
            m_tref[f] = t;
            if (flows[f].path_len == 0)
                set_rate(f, flows[f].cap_Bps > 0 ? flows[f].cap_Bps : inf, t);
            else
                m_added.push_back(f);
        }
        if (active == 0) continue;
        if (!m_added.empty()) refill(0, t, flows, hops);
        while (!m_finish_heap.empty() && stale(m_finish_heap.front())) pop();
        MLSIM_CHECK(!m_finish_heap.empty(), "an active flow has no projected finish");
        const double t_arrive = next < n ? m_start[order[next]] : inf;
        const double first = m_finish_heap.front().t;
        if (first > t_arrive) {
            t = t_arrive;
            continue;
        }
        // every flow within rel_tol of the first finish ends with it
        const double dt = std::max(0.0, first - t);
        const double t_next = t + dt;
        std::size_t from = npos;
        while (!m_finish_heap.empty()) {
            const Projected p = m_finish_heap.front();
            if (stale(p)) {
                pop();
                continue;
            }
            if (p.t - t > dt * (1 + rel_tol)) break;
            pop();
            finish[p.flow] = t_next + flows[p.flow].latency_s;
            m_state[p.flow] = 2;
            --active;
            if (m_pos[p.flow] != npos) from = std::min<std::size_t>(from, m_group[m_pos[p.flow]]);
        }
        t = t_next;
        if (from != npos && active > 0) refill(from, t, flows, hops);
    }
    remember(flows, hops, t0, finish);
    m_span = n ? *std::max_element(finish.begin(), finish.end()) : 0;
    for (double& x : finish) x += t0;
}

bool FluidSolver::same_as_last(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
                               double t0) const {
    if (flows.size() != m_last.size() || hops != m_last_hops) return false;
    for (std::size_t i = 0; i < flows.size(); ++i) {
        const StageFlowTiming& a = flows[i];
        const StageFlowTiming& b = m_last[i];
        if (a.path_off != b.path_off || a.path_len != b.path_len || a.bytes != b.bytes ||
            a.cap_Bps != b.cap_Bps || a.latency_s != b.latency_s || a.start_s - t0 != b.start_s)
            return false;
    }
    return true;
}

void FluidSolver::remember(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
                           double t0, const std::vector<double>& finish) {
    // A few of the stage's numbers: the whole stage is copied only when they equal the previous stage's
    // (the steps of a ring repeat; those of a pairwise all-to-all differ at once, and copying each would
    // cost more than the reuse saves).
    if (flows.empty()) {
        m_sig.clear();
        m_last.clear();
        m_last_hops.clear();
        return;
    }
    std::vector<double>& sig = m_sig_scratch;
    sig.clear();
    sig.push_back(static_cast<double>(flows.size()));
    sig.push_back(static_cast<double>(hops.size()));
    for (std::size_t i : {std::size_t{0}, flows.size() / 2, flows.size() - 1}) {
        const StageFlowTiming& f = flows[i];
        for (double x : {static_cast<double>(f.path_off), static_cast<double>(f.path_len), f.bytes, f.cap_Bps,
                         f.latency_s, f.start_s - t0})
            sig.push_back(x);
    }
    for (std::size_t k = 0; k < hops.size() && k < 64; ++k) sig.push_back(hops[k]);
    for (std::size_t k = hops.size() > 64 ? hops.size() - 64 : 0; k < hops.size(); ++k)
        sig.push_back(hops[k]);
    const bool repeating = sig == m_sig;
    std::swap(m_sig, sig);
    if (!repeating || flows.size() > memo_flows) {
        m_last.clear();
        m_last_hops.clear();
        return;
    }
    m_last = flows;
    for (StageFlowTiming& f : m_last) f.start_s -= t0;
    m_last_hops = hops;
    m_last_finish = finish;
}

void PacketSolver::solve(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
                         std::vector<double>& finish) {
    const std::size_t n = flows.size();
    finish.assign(n, 0);
    int64_t work = 0;
    std::vector<int64_t> packets(n);
    for (std::size_t f = 0; f < n; ++f) {
        packets[f] =
            flows[f].bytes <= 0 ? 0 : static_cast<int64_t>(std::ceil(flows[f].bytes / m_packet_bytes));
        work += packets[f] * flows[f].path_len;
    }
    m_total_packet_hops += work;
    if (m_total_packet_hops > m_max_packet_hops)
        throw cfg::UserError(
            "error: --fidelity packet: the collective moves more than " + std::to_string(m_max_packet_hops) +
            " packet-hops; the packet reference is for small systems and sizes (use --fidelity "
            "flow, or a larger --packet-size)");
    struct Ev {
        double t;
        uint64_t seq;
        uint32_t flow;
        int64_t pkt;
        uint32_t hop;
        bool txdone;
        bool operator>(const Ev& o) const { return t != o.t ? t > o.t : seq > o.seq; }
    };
    std::priority_queue<Ev, std::vector<Ev>, std::greater<>> q;
    uint64_t seq = 0;
    struct Port {
        bool busy = false;
        std::queue<std::pair<uint32_t, int64_t>> fifo;  // (flow, packet)
    };
    std::vector<Port> ports(m_routes.resource_count());
    std::vector<uint32_t> hop_of_port_tx(m_routes.resource_count(), 0);
    auto size_of = [&](uint32_t f, int64_t k) {
        const double full = m_packet_bytes;
        return k + 1 < packets[f] ? full : flows[f].bytes - full * static_cast<double>(packets[f] - 1);
    };
    for (uint32_t f = 0; f < n; ++f) {
        if (packets[f] == 0 || flows[f].path_len == 0) {
            finish[f] = flows[f].start_s + flows[f].latency_s;
            continue;
        }
        q.push({flows[f].start_s, seq++, f, 0, 0, false});
    }
    // A port that starts a packet: schedules its end, and lets the packet's source queue the next one.
    std::vector<double> next_inject(n, 0);
    auto start_tx = [&](DirLink r, double t) {
        Port& p = ports[r];
        if (p.busy || p.fifo.empty()) return;
        const auto [f, k] = p.fifo.front();
        p.fifo.pop();
        p.busy = true;
        const double sz = size_of(f, k);
        // the hop index of r on f's path
        uint32_t h = 0;
        while (hops[flows[f].path_off + h] != r) ++h;
        q.push({t + sz / m_routes.capacity(r), seq++, f, k, h, true});
        if (h == 0 && k + 1 < packets[f]) {
            double when = t;
            if (flows[f].cap_Bps > 0) when = std::max(when, next_inject[f]);
            next_inject[f] = when + sz / (flows[f].cap_Bps > 0 ? flows[f].cap_Bps : inf);
            q.push({when, seq++, f, k + 1, 0, false});
        }
    };
    while (!q.empty()) {
        const Ev e = q.top();
        q.pop();
        const StageFlowTiming& fl = flows[e.flow];
        const DirLink r = hops[fl.path_off + e.hop];
        if (!e.txdone) {
            ports[r].fifo.push({e.flow, e.pkt});
            start_tx(r, e.t);
            continue;
        }
        ports[r].busy = false;
        const double arrive = e.t + m_routes.hop_latency(r);
        if (e.hop + 1 == fl.path_len) {
            if (e.pkt + 1 == packets[e.flow]) finish[e.flow] = arrive;
        } else {
            q.push({arrive, seq++, e.flow, e.pkt, e.hop + 1, false});
        }
        start_tx(r, e.t);
    }
    // a source that is a switch adds its own latency once (as the fluid path latency does)
    for (uint32_t f = 0; f < n; ++f) {
        double hop_sum = 0;
        for (uint32_t h = 0; h < flows[f].path_len; ++h)
            hop_sum += m_routes.hop_latency(hops[flows[f].path_off + h]);
        if (packets[f] > 0 && flows[f].path_len > 0) finish[f] += flows[f].latency_s - hop_sum;
    }
}

}  // namespace mlsim::arch::net::impl

#include "arch/system/parallel_exec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <unordered_map>

#include "sim/config/error.h"
#include "sim/config/limits.h"
#include "sim/core/check.h"
#include "sim/core/simulator.h"

namespace mlsim::arch {

namespace {

using wl::GroupAxis;
using wl::StageProgram;
using wl::Task;

constexpr int k_axes = 7;              // GroupAxis values
constexpr int k_streams = 2 * k_axes;  // (axis, send?) per rank
constexpr int k_step_sec = 2;

int axis_of(GroupAxis a) { return static_cast<int>(a); }

// ---- compute timing: one device-model run per distinct program and device type ----------------------

struct TaskTime {
    Tick time = Tick::zero();
    double energy_j = 0, flops = 0;
    int layer = -1;  // index into ProgramTiming::layers
};

struct ProgramTiming {
    std::vector<TaskTime> sec[3];
    std::vector<LayerResult> layers;
};

std::string op_signature(const wl::Op& op) {
    std::string s = op.kind;
    s += '|';
    s += std::to_string(static_cast<int>(op.dtype));
    s += '|';
    s += std::to_string(static_cast<int>(op.phase));
    for (const wl::Shape& sh : op.inputs) s += wl::shape_str(sh);
    s += '>';
    for (const wl::Shape& sh : op.outputs) s += wl::shape_str(sh);
    const wl::OpCounts c = op.counts();
    s += fmt::format("|{}|{}|{}|{}|{}|{}", c.macs, c.flops, c.params, c.weight_bytes, c.input_bytes,
                     c.output_bytes);
    for (const wl::GemmShape& g : op.gemms()) s += fmt::format("g{},{},{},{}", g.batch, g.m, g.n, g.k);
    return s;
}

// The sections' compute ops as one model. Edges: each compute task's compute dependencies, matched to its
// input slots in order by shape (the lowering lists a task's dependencies in input-slot order); then, for
// a slot still unfed, the tensors a training lowering's op reads across sections (workloads/training.h):
// a backward op reads its forward op's output or that op's inputs, an optimizer update the gradients of
// its forward op's backward ops. So a GPU's epilogue fusion sees the consumers it sees in a single-device
// run. Names are made unique by the section.
struct SectionModel {
    wl::Model model;
    std::vector<std::vector<int>> layer_of;  // per section, per task: index into model ops (-1: comm)
    std::string signature;
};

SectionModel program_model(const StageProgram& prog) {
    const std::vector<Task>* secs[3] = {&prog.forward, &prog.backward, &prog.step};
    wl::ModelBuilder b("program.stage" + std::to_string(prog.stage));
    SectionModel out;
    std::set<std::string> names;
    std::vector<const wl::Op*> ops;  // by model index
    std::unordered_map<std::string, std::vector<int>>
        fwd_inputs;  // forward op -> per input slot, its producer
    std::unordered_map<std::string, std::vector<int>> backward_of;  // forward op -> its backward ops
    int next = 0;
    for (int s = 0; s < 3; ++s) {
        const std::vector<Task>& ts = *secs[s];
        out.layer_of.emplace_back(ts.size(), -1);
        std::vector<int>& lo = out.layer_of.back();
        for (size_t i = 0; i < ts.size(); ++i) {
            if (!ts[i].op) {
                out.signature += "|comm";  // task indices map to timings: the layout is part of the key
                continue;
            }
            const wl::Op& orig = *ts[i].op;
            wl::Op op = orig;
            op.name = fmt::format("s{}.{}", s, op.name);
            // A tie to an op of this program keeps it (the weights are stored once); one to another
            // stage's op (the LM head tied to the first stage's embedding) holds its own copy here.
            if (!op.tied_to.empty()) {
                const std::string tied = fmt::format("s{}.{}", s, op.tied_to);
                op.tied_to = names.count(tied) ? tied : std::string{};
            }
            std::vector<std::optional<wl::TensorRef>> srcs(op.inputs.size());
            out.signature += op_signature(op);
            const auto try_feed = [&](size_t j, int layer) {
                const wl::Op& p = *ops[static_cast<size_t>(layer)];
                for (size_t k = 0; k < p.outputs.size(); ++k)
                    if (p.outputs[k] == op.inputs[j]) {
                        srcs[j] = wl::TensorRef{static_cast<size_t>(layer), static_cast<int>(k)};
                        out.signature += fmt::format("e{}.{}>{}", layer - next, k, j);
                        return true;
                    }
                return false;
            };
            size_t pos = 0;
            const std::vector<size_t>& deps = ts[i].deps;
            for (size_t j = 0; j < op.inputs.size(); ++j)
                for (size_t q = pos; q < deps.size(); ++q) {
                    const size_t d = deps[q];
                    if (d >= i || !ts[d].op) continue;
                    if (try_feed(j, lo[d])) {
                        pos = q + 1;
                        break;
                    }
                }
            if (s == 1 && !orig.forward_of.empty()) {
                // Backward op: slot 0 the output gradient, slot k >= 1 the forward op's input k - 1.
                if (auto f = fwd_inputs.find(orig.forward_of); f != fwd_inputs.end())
                    for (size_t j = 1; j < op.inputs.size(); ++j)
                        if (!srcs[j] && j - 1 < f->second.size() && f->second[j - 1] >= 0)
                            try_feed(j, f->second[j - 1]);
            } else if (s == k_step_sec && !orig.forward_of.empty()) {
                const std::vector<int>& across = backward_of[orig.forward_of];
                for (size_t j = 0; j < op.inputs.size(); ++j)
                    for (auto c = across.begin(); c != across.end() && !srcs[j]; ++c) try_feed(j, *c);
            }
            lo[i] = next++;
            if (s == 0) {
                std::vector<int>& fi = fwd_inputs[orig.name];
                for (const auto& src : srcs) fi.push_back(src ? static_cast<int>(src->op) : -1);
            } else if (s == 1 && !orig.forward_of.empty()) {
                backward_of[orig.forward_of].push_back(lo[i]);
            }
            names.insert(op.name);
            ops.push_back(&orig);
            b.add(std::move(op), srcs);
        }
        out.signature += '#';
    }
    out.model = std::move(b).build();
    return out;
}

// ---- static structure of a program's sections ---------------------------------------------------------

struct SectionInfo {
    const std::vector<Task>* tasks = nullptr;
    std::vector<std::vector<uint32_t>> dependents;
    std::vector<uint32_t> compute;  // compute tasks in order
    std::vector<uint32_t> ndeps;    // dependencies of each task (the lowering's, plus the engine's)
};

struct ProgramInfo {
    const StageProgram* prog = nullptr;
    SectionInfo sec[3];
    std::vector<std::vector<uint32_t>> step_waiters;  // backward task -> step tasks that wait for it
    const ProgramTiming* timing = nullptr;
    int64_t last_backward_item = -1;
    std::vector<wl::ScheduleItem> items;  // the schedule, then the step (pass forward, microbatch -1)
};

int sec_of_item(const ProgramInfo& p, size_t item) {
    if (item + 1 == p.items.size()) return k_step_sec;
    return p.items[item].pass == wl::Pass::forward ? 0 : 1;
}

// ---- the engine ----------------------------------------------------------------------------------------

struct Instance {  // one task of one item of one simulated rank
    uint32_t rank = 0, item = 0, task = 0;
};

struct ItemState {
    std::vector<Tick> done;  // Tick::max() while not done
    std::vector<uint32_t> remaining;
    bool started = false;
};

struct Wait {  // what a finished task reports to a compute task waiting on it
    bool comm = false, recv = false;
    Tick transfer_start = Tick::zero();
    // A communication: when it was ready (its dependencies done) and when the rank's stream for it issued it
    // (the rank's own earlier communications on that stream done). From ready to issued the rank waited on
    // its own communication (exposed); from issued to transfer_start on its peers (a bubble).
    Tick ready = Tick::zero(), issued = Tick::zero();
    std::string_view purpose;
};

// Of a wait [a, b] for a communication's transfer to start, the time the communication was ready but queued
// behind the rank's own earlier communications on its stream ([ready, issued]): exposed communication. The
// rest is a bubble: the communication not yet ready, or issued and waiting for a late peer.
double queued(Tick a, Tick b, Tick ready, Tick issued) {
    const Tick from = std::max(a, ready), to = std::min(b, issued);
    return to > from ? (to - from).to_seconds() : 0.0;
}

struct RankState {
    int64_t rank = 0, stage = 0;
    const ProgramInfo* info = nullptr;
    std::size_t type = 0;
    std::vector<ItemState> items;
    size_t cur_item = 0, cur_pos = 0;
    bool running = false, waiting = false, finished = false;
    Tick wait_start = Tick::zero(), compute_end = Tick::zero();
    std::deque<std::pair<Instance, Tick>> streams[k_streams];  // each queued with when it was ready
    bool stream_busy[k_streams] = {};
    int64_t coll_seq[k_axes] = {}, send_seq[k_axes] = {}, recv_seq[k_axes] = {};
    std::vector<int64_t> group_cache[k_axes];
    bool group_cached[k_axes] = {};
    // accounting
    double compute_s = 0, comm_s = 0, exposed_s = 0, bubble_s = 0, energy_j = 0, flops = 0;
    Tick last_comm_end = Tick::zero(), last_comm_start = Tick::zero();
    std::string last_comm_purpose;
    std::map<std::string, double> exposed_by;
    // The last communication's issue: when it was ready, when its stream issued it (see Wait).
    Tick last_comm_ready = Tick::zero(), last_comm_issued = Tick::zero();
};

// A rank's part in a communication: its task, when it was ready and when its stream issued it (see Wait).
struct Member {
    Instance in;
    Tick ready = Tick::zero(), issued = Tick::zero();
};

struct PendingComm {
    std::vector<Member> members;
    int required = 0;
    bool p2p = false;
    // p2p: members[0] = send (when arrived), recv separately
    bool has_send = false, has_recv = false;
    Member send, recv;
    std::vector<int64_t> group;  // devices (collectives)
    GroupAxis axis = GroupAxis::tensor;
    const wl::CommOp* op = nullptr;
    Tick start = Tick::zero(), end = Tick::zero();
};

class Engine {
  public:
    Engine(const SystemSpec& system, const wl::ParallelLowering& lowering, const ExecOptions& options,
           bool symmetric, bool skip_tensor_mirrors, bool memoize)
        : m_sys(system),
          m_low(lowering),
          m_opt(options),
          m_sym(symmetric),
          m_skip_tp(skip_tensor_mirrors),
          m_memo(memoize),
          m_net(system.topology, options.network) {}

    ExecResult run();
    bool tensor_links_private() const { return m_tp_private; }
    bool memo_valid() const { return m_memo_valid; }

    void on_compute_done(std::uint64_t r);
    void on_comm_done(std::uint64_t id);

  private:
    const std::vector<int64_t>& group(RankState& r, GroupAxis a) {
        const int i = axis_of(a);
        if (!r.group_cached[i]) {
            r.group_cache[i] = m_low.group(r.rank, a);
            r.group_cached[i] = true;
        }
        return r.group_cache[i];
    }
    const Task& task_of(const Instance& in) const {
        const RankState& r = m_ranks[in.rank];
        return (*r.info->sec[sec_of_item(*r.info, in.item)].tasks)[in.task];
    }
    void start_item(RankState& r, size_t item);
    void advance(RankState& r);
    void finish_task(const Instance& in, Tick at, const Wait& why);
    void make_ready(const Instance& in);
    void start_stream(RankState& r, int stream);
    void start_comm(const Instance& in, Tick ready);
    void launch(size_t pending_id);
    std::vector<std::vector<int64_t>> mirror_groups(const std::vector<Member>& members, GroupAxis axis,
                                                    const std::vector<int64_t>& own);
    std::vector<std::pair<int64_t, int64_t>> mirror_pairs(int64_t stage, GroupAxis axis, int64_t own_src);
    void count_links(const std::vector<net::LinkBytes>& lb, double copies, bool tensor);
    void count_hops(const std::vector<net::Hop>& hops, double bytes);
    ProgramTiming& timing_for(const StageProgram& prog, std::size_t type);

    const SystemSpec& m_sys;
    const wl::ParallelLowering& m_low;
    const ExecOptions& m_opt;
    bool m_sym, m_skip_tp, m_memo;
    net::FlowNetwork m_net;
    Simulator m_sim;
    std::vector<RankState> m_ranks;
    std::vector<int64_t> m_sim_index;  // plan rank -> simulated index, -1 when not simulated
    std::vector<std::unique_ptr<ProgramInfo>> m_infos;
    std::map<std::pair<std::string, std::size_t>, std::unique_ptr<ProgramTiming>> m_timings;
    std::vector<std::unique_ptr<DeviceModel>> m_models;
    std::vector<PendingComm> m_pending;
    std::unordered_map<std::uint64_t, size_t> m_coll_open, m_p2p_open;
    std::map<std::pair<int, std::vector<int64_t>>, std::vector<std::vector<int64_t>>> m_mirror_cache;
    ExecResult m_res;
    std::vector<double> m_link_dir_bytes;  // 2 * link + direction
    std::set<net::LinkId> m_tp_links, m_other_links;
    bool m_tp_private = true;
    // Memo (see the contract): per link direction (2 * link + direction, as m_link_dir_bytes), until when
    // a call held it and until when a replayed one did.
    struct CallMemo {
        Tick duration = Tick::zero();
        std::vector<net::LinkBytes> link_bytes;
        std::vector<net::Hop> hops;
        std::vector<net::LinkId> links;
        net::CollectiveAlgorithm algorithm = net::CollectiveAlgorithm::ring;
        net::Protocol protocol = net::Protocol::simple;
    };
    std::vector<Tick> m_busy_until, m_replay_until;
    // Per link: the memo key (index + 1) of the only call that used it, or -1 when two keys did.
    std::vector<int64_t> m_owner;
    std::map<std::vector<int64_t>, CallMemo> m_memos;
    std::map<std::vector<int64_t>, int64_t> m_key_ids;
    bool m_memo_valid = true;

  public:
    std::set<net::LinkId> shared_links;  // in: links a previous try found crossed; out: those found now

  private:
    int64_t key_id(const std::vector<int64_t>& key) {
        return m_key_ids.emplace(key, static_cast<int64_t>(m_key_ids.size()) + 1).first->second;
    }
    // A remembered call replays when its links are idle and used by no other call's key.
    bool replayable(const CallMemo& m, int64_t id, Tick at) const {
        for (net::LinkId l : m.links)
            if (m_busy_until[l] > at || m_owner[l] != id) return false;
        return true;
    }
    bool links_idle(const std::vector<net::LinkId>& links, Tick at) const {
        for (net::LinkId l : links)
            if (m_busy_until[l] > at) return false;
        return true;
    }
    // Before a simulated call's result is used: the replay check, then its links' busy spans and owners.
    void hold_simulated(const std::vector<net::LinkId>& links, int64_t id, Tick start, Tick end) {
        for (net::LinkId l : links) {
            if (m_replay_until[l] > start) {
                m_memo_valid = false;
                shared_links.insert(l);
            }
            m_busy_until[l] = std::max(m_busy_until[l], end);
            if (m_owner[l] == 0) m_owner[l] = id;
            if (m_owner[l] != id) m_owner[l] = -1;
        }
    }
    void hold_replayed(const std::vector<net::LinkId>& links, Tick end) {
        for (net::LinkId l : links) {
            m_busy_until[l] = std::max(m_busy_until[l], end);
            m_replay_until[l] = std::max(m_replay_until[l], end);
        }
    }
};

ProgramTiming& Engine::timing_for(const StageProgram& prog, std::size_t type) {
    SectionModel sm = program_model(prog);
    auto key = std::make_pair(sm.signature, type);
    auto it = m_timings.find(key);
    if (it != m_timings.end()) return *it->second;
    auto t = std::make_unique<ProgramTiming>();
    if (!m_models[type]) m_models[type] = make_device_model(m_sys.device_types.at(type));
    if (!sm.model.ops().empty()) t->layers = m_models[type]->run(sm.model);
    ++m_res.device_model_runs;
    MLSIM_CHECK(t->layers.size() == sm.model.ops().size(), "a device model skipped an op of a program");
    // Map results to the tasks by op name (ops() is topological, equal to insertion order here).
    std::unordered_map<std::string, int> by_name;
    for (size_t i = 0; i < t->layers.size(); ++i) by_name[t->layers[i].name] = static_cast<int>(i);
    for (int s = 0; s < 3; ++s) {
        const std::vector<int>& lo = sm.layer_of[static_cast<size_t>(s)];
        t->sec[s].resize(lo.size());
        for (size_t i = 0; i < lo.size(); ++i) {
            if (lo[i] < 0) continue;
            const std::string& nm = sm.model.op(static_cast<size_t>(lo[i])).name;
            const int li = by_name.at(nm);
            const LayerResult& l = t->layers[static_cast<size_t>(li)];
            t->sec[s][i] = TaskTime{Tick::from_seconds(l.time_s), l.energy_j(), l.counts.flops, li};
        }
    }
    auto& slot = m_timings[key];
    slot = std::move(t);
    return *slot;
}

void Engine::count_links(const std::vector<net::LinkBytes>& lb, double copies, bool tensor) {
    const net::Topology& topo = m_net.topology();
    for (const net::LinkBytes& b : lb) {
        m_link_dir_bytes[2 * b.link] += b.a_to_b * copies;
        m_link_dir_bytes[2 * b.link + 1] += b.b_to_a * copies;
        (tensor ? m_tp_links : m_other_links).insert(b.link);
        if (tensor) {
            const net::Link& l = topo.link(b.link);
            const int64_t na = topo.vertex(l.a).place.node, nb = topo.vertex(l.b).place.node;
            if (na < 0 || na != nb) m_tp_private = false;
        }
    }
}

void Engine::count_hops(const std::vector<net::Hop>& hops, double bytes) {
    for (const net::Hop& h : hops) {
        const net::Link& l = m_net.topology().link(h.link);
        m_link_dir_bytes[2 * h.link + (h.from == l.a ? 0 : 1)] += bytes;
        m_other_links.insert(h.link);
    }
}

void Engine::start_item(RankState& r, size_t item) {
    const ProgramInfo& p = *r.info;
    const int sec = sec_of_item(p, item);
    ItemState& st = r.items[item];
    st.started = true;
    const std::vector<Task>& ts = *p.sec[sec].tasks;
    const bool skip_last_only = sec == 1 && static_cast<int64_t>(item) != p.last_backward_item;
    for (uint32_t j = 0; j < ts.size(); ++j) {
        if (!ts[j].comm) continue;
        const Instance in{static_cast<uint32_t>(&r - m_ranks.data()), static_cast<uint32_t>(item), j};
        if (ts[j].last_microbatch_only && skip_last_only) {
            finish_task(in, m_sim.now(), Wait{});
            continue;
        }
        if (st.remaining[j] == 0) make_ready(in);
    }
}

void Engine::make_ready(const Instance& in) {
    RankState& r = m_ranks[in.rank];
    const wl::CommOp& c = *task_of(in).comm;
    const int stream = 2 * axis_of(c.axis) + (c.collective ? 0 : (c.send ? 1 : 0));
    r.streams[stream].emplace_back(in, m_sim.now());
    if (!r.stream_busy[stream]) start_stream(r, stream);
}

void Engine::start_stream(RankState& r, int stream) {
    if (r.streams[stream].empty()) return;
    r.stream_busy[stream] = true;
    const auto [in, ready] = r.streams[stream].front();
    r.streams[stream].pop_front();
    start_comm(in, ready);
}

void Engine::start_comm(const Instance& in, Tick ready) {
    RankState& r = m_ranks[in.rank];
    const Tick now = m_sim.now();
    const wl::CommOp& c = *task_of(in).comm;
    const std::vector<int64_t>& g = group(r, c.axis);
    if (c.collective) {
        if (g.size() <= 1) {  // a group of one costs nothing
            const size_t id = m_pending.size();
            m_pending.push_back(PendingComm{});
            m_pending[id].members = {Member{in, ready, now}};
            m_pending[id].op = &c;
            m_pending[id].axis = c.axis;
            m_pending[id].start = m_pending[id].end = m_sim.now();
            m_sim.schedule_at(m_sim.now(), callback<&Engine::on_comm_done>(this, id));
            return;
        }
        const int a = axis_of(c.axis);
        const int64_t seq = r.coll_seq[a]++;
        const std::uint64_t key = (static_cast<std::uint64_t>(a) << 60) |
                                  (static_cast<std::uint64_t>(g.front()) << 36) |
                                  static_cast<std::uint64_t>(seq);
        auto it = m_coll_open.find(key);
        if (it == m_coll_open.end()) {
            const size_t id = m_pending.size();
            m_pending.push_back(PendingComm{});
            PendingComm& pc = m_pending[id];
            pc.group = g;
            pc.axis = c.axis;
            pc.op = &c;
            for (int64_t m : g) pc.required += m_sim_index[static_cast<size_t>(m)] >= 0 ? 1 : 0;
            pc.members.reserve(static_cast<std::size_t>(pc.required));
            it = m_coll_open.emplace(key, id).first;
        }
        PendingComm& pc = m_pending[it->second];
        // NCCL needs every member to issue a communicator's collectives in one order; matched by
        // sequence, the members' n-th calls must be the same collective.
        MLSIM_CHECK(pc.op->collective == c.collective && pc.op->purpose == c.purpose,
                    fmt::format("rank {}: its collective {} ({}) on a {}-rank group met another member's {}",
                                r.rank, seq, c.purpose, g.size(), pc.op->purpose));
        pc.members.push_back(Member{in, ready, now});
        if (static_cast<int>(pc.members.size()) == pc.required) {
            const size_t id = it->second;
            m_coll_open.erase(it);
            launch(id);
        }
        return;
    }
    // Point-to-point: the peer is the one member of the axis group.
    MLSIM_CHECK(g.size() == 1, fmt::format("rank {}: a point-to-point task with no peer", r.rank));
    const int a = axis_of(c.axis);
    const int64_t peer = g.front();
    const int64_t src = c.send ? r.rank : peer, dst = c.send ? peer : r.rank;
    const int64_t seq = c.send ? r.send_seq[a]++ : r.recv_seq[a]++;
    const std::uint64_t key = (static_cast<std::uint64_t>(src) << 44) |
                              (static_cast<std::uint64_t>(dst) << 24) | static_cast<std::uint64_t>(seq);
    auto it = m_p2p_open.find(key);
    if (it == m_p2p_open.end()) {
        const size_t id = m_pending.size();
        m_pending.push_back(PendingComm{});
        m_pending[id].p2p = true;
        m_pending[id].axis = c.axis;
        m_pending[id].op = &c;
        m_pending[id].group = {src, dst};
        it = m_p2p_open.emplace(key, id).first;
    }
    PendingComm& pc = m_pending[it->second];
    (c.send ? pc.has_send : pc.has_recv) = true;
    (c.send ? pc.send : pc.recv) = Member{in, ready, now};
    if (pc.has_send && pc.has_recv) {
        if (c.send) pc.op = &c;  // the sender's size
        const size_t id = it->second;
        m_p2p_open.erase(it);
        pc.members = {pc.send, pc.recv};
        launch(id);
    }
}

std::vector<std::vector<int64_t>> Engine::mirror_groups(const std::vector<Member>& members, GroupAxis axis,
                                                        const std::vector<int64_t>& own) {
    std::vector<int64_t> stages;
    for (const Member& m : members) stages.push_back(m_ranks[m.in.rank].stage);
    std::sort(stages.begin(), stages.end());
    stages.erase(std::unique(stages.begin(), stages.end()), stages.end());
    auto key = std::make_pair(axis_of(axis), stages);
    auto it = m_mirror_cache.find(key);
    if (it != m_mirror_cache.end()) return it->second;
    std::set<std::vector<int64_t>> gs;
    const wl::ParallelPlan& pl = m_low.plan;
    for (int64_t s : stages)
        for (int64_t d = 0; d < pl.data; ++d)
            for (int64_t t = 0; t < pl.tensor; ++t) {
                const int64_t rk = m_low.rank_of(wl::RankCoord{d, t, s});
                std::vector<int64_t> g = m_low.group(rk, axis);
                if (g != own && g.size() > 1) gs.insert(std::move(g));
            }
    std::vector<std::vector<int64_t>> out(gs.begin(), gs.end());
    m_mirror_cache.emplace(key, out);
    return out;
}

void Engine::launch(size_t id) {
    PendingComm& pc = m_pending[id];
    const Tick now = m_sim.now();
    pc.start = now;
    Tick end = now;
    ExecComm rec;
    rec.purpose = pc.op->purpose;
    rec.bytes = pc.op->bytes;
    rec.start_s = now.to_seconds();
    const bool tensor = pc.axis == GroupAxis::tensor;
    if (pc.p2p) {
        rec.kind = "send_recv";
        rec.ranks = 2;
        rec.algorithm = "direct";
        rec.protocol = "simple";
        const auto xfer = [&](int64_t s, int64_t d) {
            std::vector<int64_t> key;
            if (m_memo) {
                key = {-1, s, d, pc.op->bytes};
                auto it = m_memos.find(key);
                if (it != m_memos.end() && replayable(it->second, key_id(key), now)) {
                    ++m_res.memo_hits;
                    const Tick e = now + it->second.duration;
                    hold_replayed(it->second.links, e);
                    count_hops(it->second.hops, static_cast<double>(pc.op->bytes));
                    return e;
                }
            }
            const net::Transfer t = m_net.transfer(static_cast<net::VertexId>(s),
                                                   static_cast<net::VertexId>(d), pc.op->bytes, now);
            ++m_res.network_calls;
            count_hops(t.hops, static_cast<double>(pc.op->bytes));
            if (m_memo) {
                std::vector<net::LinkId> links;
                for (const net::Hop& h : t.hops)
                    links.push_back(2 * h.link + (h.from == m_net.topology().link(h.link).a ? 0 : 1));
                std::sort(links.begin(), links.end());
                links.erase(std::unique(links.begin(), links.end()), links.end());
                const bool idle = links_idle(links, now);
                hold_simulated(links, key_id(key), now, t.end);
                if (idle && !m_memos.count(key))
                    m_memos.emplace(key, CallMemo{t.end - now, {}, t.hops, links, {}, {}});
            }
            return t.end;
        };
        end = xfer(pc.group[0], pc.group[1]);
        if (m_sym) {
            const RankState& sr = m_ranks[pc.send.in.rank];
            const wl::RankCoord c0 = m_low.coord(sr.rank);
            const wl::RankCoord c1 = m_low.coord(pc.group[1]);
            for (int64_t d = 0; d < m_low.plan.data; ++d)
                for (int64_t t = 0; t < m_low.plan.tensor; ++t) {
                    if (d == c0.data && t == c0.tensor) continue;
                    const Tick e = xfer(m_low.rank_of(wl::RankCoord{d, t, c0.pipeline}),
                                        m_low.rank_of(wl::RankCoord{d, t, c1.pipeline}));
                    m_res.symmetry_spread_s =
                        std::max(m_res.symmetry_spread_s, std::abs((e - end).to_seconds()));
                    end = std::max(end, e);
                    ++rec.copies;
                }
        }
    } else {
        net::CollectiveRequest q;
        q.kind = *pc.op->collective;
        q.algorithm = m_opt.algorithm;
        q.protocol = m_opt.protocol;
        q.bytes = pc.op->bytes;
        q.start = now;
        q.counts = pc.op->counts;
        const auto call = [&](const std::vector<int64_t>& g, double copies) {
            q.group.assign(g.begin(), g.end());
            std::vector<int64_t> key;
            if (m_memo) {
                key = {static_cast<int64_t>(q.kind), static_cast<int64_t>(q.algorithm),
                       static_cast<int64_t>(q.protocol), q.bytes, static_cast<int64_t>(g.size())};
                key.insert(key.end(), g.begin(), g.end());
                key.insert(key.end(), q.counts.begin(), q.counts.end());
                auto it = m_memos.find(key);
                if (it != m_memos.end() && replayable(it->second, key_id(key), now)) {
                    ++m_res.memo_hits;
                    const CallMemo& m = it->second;
                    const Tick e = now + m.duration;
                    hold_replayed(m.links, e);
                    count_links(m.link_bytes, copies, tensor);
                    rec.algorithm = std::string(net::to_string(m.algorithm));
                    rec.protocol = std::string(net::to_string(m.protocol));
                    return e;
                }
            }
            const net::CollectiveResult res = m_net.collective(q);
            ++m_res.network_calls;
            count_links(res.link_bytes, copies, tensor);
            rec.algorithm = std::string(net::to_string(res.algorithm));
            rec.protocol = std::string(net::to_string(res.protocol));
            if (m_memo) {
                std::vector<net::LinkId> links;
                for (const net::LinkBytes& b : res.link_bytes) {
                    if (b.a_to_b > 0) links.push_back(2 * b.link);
                    if (b.b_to_a > 0) links.push_back(2 * b.link + 1);
                }
                std::sort(links.begin(), links.end());
                links.erase(std::unique(links.begin(), links.end()), links.end());
                const bool idle = links_idle(links, now);
                hold_simulated(links, key_id(key), now, res.end);
                if (idle && !m_memos.count(key))
                    m_memos.emplace(
                        key, CallMemo{res.end - now, res.link_bytes, {}, links, res.algorithm, res.protocol});
            }
            return res.end;
        };
        rec.kind = std::string(net::to_string(q.kind));
        rec.ranks = static_cast<int64_t>(pc.group.size());
        if (m_sym) {
            const std::vector<std::vector<int64_t>> mirrors = mirror_groups(pc.members, pc.axis, pc.group);
            const bool skip = tensor && m_skip_tp;
            end = call(pc.group, skip ? 1.0 + static_cast<double>(mirrors.size()) : 1.0);
            rec.copies += static_cast<int64_t>(mirrors.size());
            if (!skip)
                for (const std::vector<int64_t>& g : mirrors) {
                    const Tick e = call(g, 1.0);
                    m_res.symmetry_spread_s =
                        std::max(m_res.symmetry_spread_s, std::abs((e - end).to_seconds()));
                    end = std::max(end, e);
                }
        } else {
            end = call(pc.group, 1.0);
        }
    }
    pc.end = end;
    rec.end_s = end.to_seconds();
    m_res.comms.push_back(std::move(rec));
    m_sim.schedule_at(end, callback<&Engine::on_comm_done>(this, id));
}

void Engine::on_comm_done(std::uint64_t id) {
    // Taken out, not referred to: start_stream below may add pending calls and move m_pending. Nothing reads
    // a finished call's members again.
    const std::vector<Member> members = std::move(m_pending[id].members);
    const Tick pc_start = m_pending[id].start, pc_end = m_pending[id].end;
    const bool pc_p2p = m_pending[id].p2p;
    for (const Member& m : members) {
        const Instance& in = m.in;
        RankState& r = m_ranks[in.rank];
        const wl::CommOp& c = *task_of(in).comm;
        r.comm_s += (pc_end - pc_start).to_seconds();
        if (pc_end >= r.last_comm_end) {
            r.last_comm_end = pc_end;
            r.last_comm_start = pc_start;
            r.last_comm_purpose = c.purpose;
            r.last_comm_ready = m.ready;
            r.last_comm_issued = m.issued;
        }
        const int stream = 2 * axis_of(c.axis) + (c.collective ? 0 : (c.send ? 1 : 0));
        r.stream_busy[stream] = false;
        Wait w;
        w.comm = true;
        w.recv = pc_p2p && !c.send;
        w.transfer_start = pc_start;
        w.ready = m.ready;
        w.issued = m.issued;
        w.purpose = c.purpose;
        finish_task(in, m_sim.now(), w);
        start_stream(r, stream);
    }
}

void Engine::finish_task(const Instance& in, Tick at, const Wait& why) {
    RankState& r = m_ranks[in.rank];
    const ProgramInfo& p = *r.info;
    const int sec = sec_of_item(p, in.item);
    ItemState& st = r.items[in.item];
    st.done[in.task] = at;
    const auto notify = [&](size_t item, uint32_t j) {
        ItemState& s2 = r.items[item];
        MLSIM_CHECK(s2.remaining[j] > 0, "a task's dependency finished twice");
        if (--s2.remaining[j] > 0) return;
        const int sec2 = sec_of_item(p, item);
        const Task& t = (*p.sec[sec2].tasks)[j];
        if (t.comm) {
            // A last-micro-batch-only task of an earlier backward item was finished (skipped) when its
            // item started: it never runs.
            const bool skipped =
                t.last_microbatch_only && sec2 == 1 && static_cast<int64_t>(item) != p.last_backward_item;
            if (s2.started && !skipped) make_ready(Instance{in.rank, static_cast<uint32_t>(item), j});
            return;
        }
        // A compute task: if the compute stream waits for it, it starts now.
        if (r.waiting && r.cur_item == item && p.sec[sec2].compute[r.cur_pos] == j) {
            const Tick waited = m_sim.now() - r.wait_start;
            if (waited > Tick::zero()) {
                // Until the transfer started: the communication queued behind the rank's own earlier ones
                // (exposed), else waiting for a late peer (bubble); then the transfer (exposed).
                double bubble = 0;
                if (why.comm) {
                    const Tick before = std::min(why.transfer_start, m_sim.now());
                    if (before > r.wait_start)
                        bubble = std::max(0.0, (before - r.wait_start).to_seconds() -
                                                   queued(r.wait_start, before, why.ready, why.issued));
                }
                const double exposed = waited.to_seconds() - bubble;
                r.bubble_s += bubble;
                r.exposed_s += exposed;
                if (exposed > 0)
                    r.exposed_by[std::string(why.purpose.empty() ? "other" : why.purpose)] += exposed;
            }
            r.waiting = false;
            advance(r);
        }
    };
    for (uint32_t d : p.sec[sec].dependents[in.task]) notify(in.item, d);
    if (sec == 1 && static_cast<int64_t>(in.item) == p.last_backward_item)
        for (uint32_t d : p.step_waiters[in.task]) notify(p.items.size() - 1, d);
}

void Engine::advance(RankState& r) {
    const ProgramInfo& p = *r.info;
    const uint32_t ri = static_cast<uint32_t>(&r - m_ranks.data());
    while (!r.running && !r.waiting && !r.finished) {
        const int sec = sec_of_item(p, r.cur_item);
        const std::vector<uint32_t>& comp = p.sec[sec].compute;
        if (r.cur_pos == comp.size()) {
            if (r.cur_item + 1 == p.items.size()) {
                r.finished = true;
                r.compute_end = m_sim.now();
                return;
            }
            ++r.cur_item;
            r.cur_pos = 0;
            start_item(r, r.cur_item);
            continue;
        }
        const uint32_t j = comp[r.cur_pos];
        if (r.items[r.cur_item].remaining[j] > 0) {
            r.waiting = true;
            r.wait_start = m_sim.now();
            return;
        }
        const TaskTime& tt = p.timing->sec[sec][j];
        r.running = true;
        r.compute_s += tt.time.to_seconds();
        r.energy_j += tt.energy_j;
        r.flops += tt.flops;
        if (r.rank == 0) {
            LayerResult l = p.timing->layers[static_cast<size_t>(tt.layer)];
            const wl::ScheduleItem& it = p.items[r.cur_item];
            l.name = sec == k_step_sec ? (*p.sec[sec].tasks)[j].name
                                       : fmt::format("mb{}.{}", it.microbatch, (*p.sec[sec].tasks)[j].name);
            l.idx = static_cast<int64_t>(m_res.rank0_layers.size());
            l.start_s = m_sim.now().to_seconds();
            l.end_s = l.start_s + l.time_s;  // the model's time (the step runs it rounded to 1 ps)
            m_res.rank0_layers.push_back(std::move(l));
        }
        m_sim.schedule_at(m_sim.now() + tt.time, callback<&Engine::on_compute_done>(this, ri));
        return;
    }
}

void Engine::on_compute_done(std::uint64_t ri) {
    RankState& r = m_ranks[ri];
    const ProgramInfo& p = *r.info;
    const int sec = sec_of_item(p, r.cur_item);
    const uint32_t j = p.sec[sec].compute[r.cur_pos];
    r.running = false;
    ++r.cur_pos;
    finish_task(Instance{static_cast<uint32_t>(ri), static_cast<uint32_t>(r.cur_item), j}, m_sim.now(),
                Wait{});
    advance(r);
}

ExecResult Engine::run() {
    const wl::ParallelPlan& pl = m_low.plan;
    const int64_t n = m_low.ranks();
    m_models.resize(m_sys.device_types.size());
    m_link_dir_bytes.assign(2 * m_net.topology().link_count(), 0);
    m_busy_until.assign(m_net.topology().link_count() * 2, Tick::zero());
    m_replay_until.assign(m_net.topology().link_count() * 2, Tick::zero());
    m_owner.assign(m_net.topology().link_count() * 2, 0);
    for (net::LinkId l : shared_links) m_owner[l] = -1;
    m_res.memoized = m_memo;
    m_sim_index.assign(static_cast<size_t>(n), -1);
    std::vector<int64_t> sim_ranks;
    for (int64_t rk = 0; rk < n; ++rk) {
        const wl::RankCoord c = m_low.coord(rk);
        if (!m_sym || (c.data == 0 && c.tensor == 0)) {
            m_sim_index[static_cast<size_t>(rk)] = static_cast<int64_t>(sim_ranks.size());
            sim_ranks.push_back(rk);
        }
    }
    // The engine keeps a state for every task of every schedule item of every simulated rank (its finish time
    // and its unmet dependencies): bounded up front, so that a plan of very many micro-batches is refused in
    // a line rather than filling the memory.
    double instances = 0, bytes = 0;
    for (const int64_t rk : sim_ranks) {
        const StageProgram& prog = m_low.program(rk);
        double mine = static_cast<double>(prog.step.size());
        for (const wl::ScheduleItem& it : prog.schedule)
            mine += static_cast<double>(it.pass == wl::Pass::forward ? prog.forward.size()
                                                                     : prog.backward.size());
        instances += mine;
        bytes += mine * (rk == 0 ? limits::parallel_rank0_task_bytes : limits::parallel_task_bytes);
    }
    if (bytes > limits::max_parallel_task_bytes)
        throw cfg::UserError(
            fmt::format("error: the parallel step would track {:.3g} task instances ({} "
                        "simulated rank(s) x "
                        "{} micro-batches x their stage's tasks), about {:.2g} GB, more than the limit of "
                        "{:.2g} GB: use fewer "
                        "micro-batches or pipeline stages",
                        instances, sim_ranks.size(), pl.microbatches, bytes / 1e9,
                        limits::max_parallel_task_bytes / 1e9));
    // Program infos, one per distinct (program object, device type).
    std::map<std::pair<const StageProgram*, std::size_t>, const ProgramInfo*> infos;
    m_ranks.resize(sim_ranks.size());
    for (size_t i = 0; i < sim_ranks.size(); ++i) {
        RankState& r = m_ranks[i];
        r.rank = sim_ranks[i];
        r.stage = m_low.coord(r.rank).pipeline;
        r.type = m_sys.devices.at(static_cast<size_t>(r.rank)).type;
        const StageProgram& prog = m_low.program(r.rank);
        auto it = infos.find({&prog, r.type});
        if (it == infos.end()) {
            auto info = std::make_unique<ProgramInfo>();
            info->prog = &prog;
            const std::vector<Task>* secs[3] = {&prog.forward, &prog.backward, &prog.step};
            for (int s = 0; s < 3; ++s) {
                SectionInfo& si = info->sec[s];
                si.tasks = secs[s];
                si.dependents.resize(secs[s]->size());
                si.ndeps.resize(secs[s]->size());
                for (uint32_t j = 0; j < secs[s]->size(); ++j) {
                    const Task& t = (*secs[s])[j];
                    std::set<size_t> deps(t.deps.begin(), t.deps.end());
                    // Megatron runs a stage's forward (or backward) as one call and sends its result when
                    // the call returns: a pipeline send also waits for every compute task before it.
                    if (t.comm && !t.comm->collective && t.comm->send)
                        for (uint32_t q = 0; q < j; ++q)
                            if ((*secs[s])[q].op) deps.insert(q);
                    si.ndeps[j] = static_cast<uint32_t>(deps.size());
                    for (size_t d : deps) {
                        MLSIM_CHECK(d < j, fmt::format("task {} of stage {} depends on a later task", t.name,
                                                       prog.stage));
                        si.dependents[d].push_back(j);
                    }
                    MLSIM_CHECK(t.op.has_value() != t.comm.has_value(),
                                fmt::format("task {} is neither one compute op nor one comm op", t.name));
                    if (t.op) si.compute.push_back(j);
                }
            }
            info->step_waiters.resize(prog.backward.size());
            for (uint32_t j = 0; j < prog.step.size(); ++j)
                for (size_t b : prog.step[j].after_backward) info->step_waiters.at(b).push_back(j);
            info->items = prog.schedule;
            for (size_t k = 0; k < info->items.size(); ++k)
                if (info->items[k].pass == wl::Pass::backward)
                    info->last_backward_item = static_cast<int64_t>(k);
            info->items.push_back(wl::ScheduleItem{-1, wl::Pass::forward});
            info->timing = &timing_for(prog, r.type);
            it = infos.emplace(std::make_pair(&prog, r.type), info.get()).first;
            m_infos.push_back(std::move(info));
        }
        r.info = it->second;
        // Item states.
        const ProgramInfo& p = *r.info;
        r.items.resize(p.items.size());
        for (size_t k = 0; k < p.items.size(); ++k) {
            const int sec = sec_of_item(p, k);
            const std::vector<Task>& ts = *p.sec[sec].tasks;
            ItemState& st = r.items[k];
            st.done.assign(ts.size(), Tick::max());
            st.remaining.resize(ts.size());
            for (size_t j = 0; j < ts.size(); ++j)
                st.remaining[j] = static_cast<uint32_t>(
                    p.sec[sec].ndeps[j] + (sec == k_step_sec ? ts[j].after_backward.size() : 0));
        }
    }
    m_res.simulated_ranks = static_cast<int64_t>(m_ranks.size());
    m_res.symmetry = m_sym ? "stage" : "off";
    for (RankState& r : m_ranks) {
        start_item(r, 0);
        advance(r);
    }
    m_sim.run();

    // Results.
    Tick step = Tick::zero();
    int64_t critical = -1;
    std::vector<Tick> ends(m_ranks.size());
    for (size_t i = 0; i < m_ranks.size(); ++i) {
        RankState& r = m_ranks[i];
        MLSIM_CHECK(r.finished,
                    fmt::format("rank {} never finished its program (stuck at item {} of {}, task "
                                "{}): the lowering's communication does not match up",
                                r.rank, r.cur_item, r.info->items.size(), r.cur_pos));
        ends[i] = std::max(r.compute_end, r.last_comm_end);
        if (r.last_comm_end > r.compute_end) {
            // Until the last communication started: queued behind the rank's own earlier ones (the last
            // gradient buckets: exposed), else its peers were behind (bubble); then exposed.
            const Tick from = std::max(r.compute_end, std::min(r.last_comm_start, r.last_comm_end));
            const double tail = (r.last_comm_end - from).to_seconds();
            const double own = queued(r.compute_end, from, r.last_comm_ready, r.last_comm_issued);
            r.bubble_s += std::max(0.0, (from - r.compute_end).to_seconds() - own);
            r.exposed_s += tail + own;
            r.exposed_by[r.last_comm_purpose] += tail + own;
        }
        if (ends[i] > step || critical < 0) {
            step = ends[i];
            critical = static_cast<int64_t>(i);
        }
    }
    m_res.step_time_s = step.to_seconds();
    const double step_s = m_res.step_time_s;
    m_res.ranks.resize(static_cast<size_t>(n));
    for (int64_t rk = 0; rk < n; ++rk) {
        const wl::RankCoord c = m_low.coord(rk);
        const int64_t rep = m_sym ? m_low.rank_of(wl::RankCoord{0, 0, c.pipeline}) : rk;
        const RankState& r = m_ranks[static_cast<size_t>(m_sim_index[static_cast<size_t>(rep)])];
        RankExec& e = m_res.ranks[static_cast<size_t>(rk)];
        e.rank = rk;
        e.stage = c.pipeline;
        e.compute_s = r.compute_s;
        e.comm_s = r.comm_s;
        e.exposed_comm_s = r.exposed_s;
        e.bubble_s = r.bubble_s;
        e.end_s = std::max(r.compute_end, r.last_comm_end).to_seconds();
        const DeviceSpec& dev = m_sys.type_of(m_sys.devices.at(static_cast<size_t>(rk)));
        e.energy_j = r.energy_j + dev.static_power_W * std::max(0.0, step_s - r.compute_s);
        e.flops = r.flops;
        e.memory = m_low.memory_of(rk);
        m_res.device_energy_j += e.energy_j;
        m_res.flops += e.flops;
    }
    const RankState& cr = m_ranks[static_cast<size_t>(critical)];
    m_res.critical_rank = cr.rank;
    m_res.exposed_by_purpose = cr.exposed_by;
    const net::Topology& topo = m_net.topology();
    for (net::LinkId l = 0; l < topo.link_count(); ++l) {
        const net::Link& lk = topo.link(l);
        for (int dir = 0; dir < 2; ++dir) {
            const double b = m_link_dir_bytes[2 * l + static_cast<size_t>(dir)];
            if (b <= 0) continue;
            m_res.link_energy_j += b * lk.props.energy_J_per_byte;
            const net::Vertex& to = topo.vertex(dir == 0 ? lk.b : lk.a);
            if (to.is_switch()) m_res.link_energy_j += b * to.sw.energy_J_per_byte;
        }
    }
    for (net::LinkId l : m_tp_links)
        if (m_other_links.count(l)) m_tp_private = false;
    m_res.symmetry_exact = m_res.symmetry_spread_s <= 1e-9;
    std::stable_sort(m_res.comms.begin(), m_res.comms.end(),
                     [](const ExecComm& a, const ExecComm& b) { return a.start_s < b.start_s; });
    (void)pl;
    return std::move(m_res);
}

// Whether the stage symmetry applies (see the contract).
bool symmetry_applies(const SystemSpec& sys, const wl::ParallelLowering& low) {
    const wl::ParallelPlan& pl = low.plan;
    if (!low.rank_programs.empty() || pl.expert != 1 || pl.data * pl.tensor <= 1) return false;
    for (int64_t rk = 0; rk < low.ranks(); ++rk) {
        const wl::RankCoord c = low.coord(rk);
        const int64_t rep = low.rank_of(wl::RankCoord{0, 0, c.pipeline});
        if (sys.devices.at(static_cast<size_t>(rk)).type != sys.devices.at(static_cast<size_t>(rep)).type)
            return false;
    }
    return true;
}

// Nodes alike: the same device count and type, and the same multiset of links inside each node.
bool nodes_alike(const SystemSpec& sys) {
    if (!sys.topology) return false;
    const net::Topology& topo = *sys.topology;
    std::map<int64_t, std::multiset<std::string>> inside;
    for (net::LinkId l = 0; l < topo.link_count(); ++l) {
        const net::Link& lk = topo.link(l);
        const int64_t na = topo.vertex(lk.a).place.node, nb = topo.vertex(lk.b).place.node;
        if (na >= 0 && na == nb)
            inside[na].insert(fmt::format("{}|{}|{}|{}", lk.props.kind, lk.bandwidth_Bps,
                                          lk.props.latency.ps(), lk.props.count));
    }
    for (const SystemNode& nd : sys.nodes)
        if (nd.devices != sys.nodes.front().devices || nd.type != sys.nodes.front().type) return false;
    for (size_t i = 1; i < sys.nodes.size(); ++i)
        if (inside[static_cast<int64_t>(i)] != inside[0]) return false;
    return true;
}

}  // namespace

ExecResult run_parallel(const SystemSpec& system, const wl::ParallelLowering& lowering,
                        const ExecOptions& options) {
    if (lowering.ranks() > system.device_count)
        throw cfg::UserError(
            fmt::format("error: the parallel plan has {} ranks but system '{}' has {} devices",
                        lowering.ranks(), system.name, system.device_count));
    MLSIM_CHECK(system.topology != nullptr, "a system without a topology");
    const bool sym = options.symmetry == ExecSymmetry::stage ||
                     (options.symmetry == ExecSymmetry::automatic && symmetry_applies(system, lowering));
    MLSIM_CHECK(!sym || symmetry_applies(system, lowering),
                "stage symmetry asked for a plan it does not apply to (per-rank programs, E > 1 or D·T = 1)");
    bool skip_tp = sym && nodes_alike(system);
    bool memo = options.memoize;
    std::set<net::LinkId> shared;
    for (int tries = 0;; ++tries) {
        Engine e(system, lowering, options, sym, skip_tp, memo);
        e.shared_links = shared;
        ExecResult r = e.run();
        // A tensor-parallel collective left its node or shared links with other traffic: issue its
        // mirrors. A simulated call crossed a replayed one's links: run again without the memo.
        const bool skip_ok = !skip_tp || e.tensor_links_private();
        const bool memo_ok = !memo || e.memo_valid();
        if (skip_ok && memo_ok) return r;
        skip_tp = skip_tp && skip_ok;
        // The links found crossed are shared from the start next time; after three tries, no memo.
        shared = e.shared_links;
        memo = memo && (memo_ok || tries < 3);
    }
}

}  // namespace mlsim::arch

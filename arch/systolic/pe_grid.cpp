#include "arch/systolic/pe_grid.h"

#include <algorithm>
#include <limits>

#include "sim/core/check.h"

namespace mlsim::arch::systolic {

namespace {

// What a run observed per fold, turned into FoldStats at the end.
struct FoldLog {
    std::vector<FoldCoord> coord;
    std::vector<int32_t> rows, cols;  // r, c per fold, as int32 for the inner loops
    std::vector<AccessCounts> counts;
    std::vector<int64_t> start, preload, last_mac, last_write;

    explicit FoldLog(const FoldGeometry& g) {
        const auto n = static_cast<size_t>(g.folds());
        coord.resize(n);
        rows.resize(n);
        cols.resize(n);
        counts.resize(n);
        start.assign(n, -1);
        preload.assign(n, -1);
        last_mac.assign(n, -1);
        last_write.assign(n, -1);
        for (size_t f = 0; f < n; ++f) {
            coord[f] = fold_coord(g, static_cast<int64_t>(f));
            rows[f] = static_cast<int32_t>(coord[f].rows);
            cols[f] = static_cast<int32_t>(coord[f].cols);
        }
    }
};

// Turns the log into per-fold and layer stats; `end` is one past the last cycle of the run.
void collect(const FoldLog& log, int64_t end, CycleRun& run) {
    const size_t n = log.coord.size();
    run.folds.resize(n);
    run.stats = GemmStats{};
    run.stats.cycles = Cycles{end};
    run.stats.folds = static_cast<int64_t>(n);
    for (size_t f = 0; f < n; ++f) {
        MLSIM_CHECK(log.start[f] >= 0 && log.last_mac[f] >= 0 && log.last_write[f] >= 0,
                    "a fold of the cycle reference never ran to completion");
        FoldStats& st = run.folds[f];
        st.coord = log.coord[f];
        st.counts = log.counts[f];
        st.timing.stream_start = Cycles{log.start[f]};
        st.timing.preload_start = Cycles{log.preload[f]};
        st.timing.compute_end = Cycles{log.last_mac[f] + 1};
        st.timing.done = Cycles{log.last_write[f] + 1};
        const int64_t from = f == 0 ? 0 : log.start[f];
        const int64_t to = f + 1 == n ? end : log.start[f + 1];
        st.timing.cycles = Cycles{to - from};
        run.stats.counts += st.counts;
    }
}

// A generous cap on a run's length that does not lean on the closed forms: a stuck controller shows
// up as an InternalError instead of a hang.
int64_t cycle_cap(const FoldGeometry& g) {
    return (g.folds() + 2) * (g.t + 3 * (g.array_rows + g.array_cols) + 4);
}

}  // namespace

Matrix::Matrix(int64_t r, int64_t c) : rows(r), cols(c) {
    MLSIM_CHECK(r >= 0 && c >= 0, "negative matrix extent");
    data.assign(static_cast<size_t>(r * c), 0);
}

PeGrid::PeGrid(ArrayShape shape) : m_shape(shape) {
    MLSIM_CHECK(shape.rows >= 1 && shape.cols >= 1, "systolic array needs at least one PE");
}

CycleRun PeGrid::run(Dataflow df, const Matrix& a, const Matrix& b) {
    MLSIM_CHECK(a.cols == b.rows, "A·B needs as many columns in A as rows in B");
    const FoldGeometry g = fold_geometry(df, m_shape, GemmShape{a.rows, b.cols, a.cols});
    MLSIM_CHECK(g.t < std::numeric_limits<int32_t>::max() && g.folds() < std::numeric_limits<int32_t>::max(),
                "problem too large for the cycle reference");
    const auto n = static_cast<size_t>(m_shape.rows * m_shape.cols);
    m_left.assign(n, Word{});
    m_top.assign(n, Word{});
    if (df == Dataflow::os) {
        m_acc.assign(n, 0);
        m_out.assign(n, OutWord{});
        return run_os(g, a, b);
    }
    m_active.assign(n, 0);
    m_shadow.assign(n, 0);
    m_active_fold.assign(n, -1);
    m_shadow_fold.assign(n, -1);
    return run_stationary(g, a, b);
}

CycleRun PeGrid::run_os(const FoldGeometry& g, const Matrix& a, const Matrix& b) {
    const int64_t R = g.array_rows, C = g.array_cols, K = g.t, N = b.cols, F = g.folds();
    FoldLog log(g);
    CycleRun run;
    run.c = Matrix(a.rows, b.cols);

    // Per column: the fold whose outputs it is capturing, how many of its rows have, and how many
    // drain cycles are left.
    std::vector<int32_t> cap_fold(static_cast<size_t>(C), -1);
    std::vector<int64_t> cap_count(static_cast<size_t>(C), 0), drain_left(static_cast<size_t>(C), 0);

    int64_t outputs_left = a.rows * b.cols;
    int64_t next = 1, injecting = 0;  // next fold to start; first fold that may still feed the edges
    log.start[0] = log.preload[0] = 0;
    const int64_t cap = cycle_cap(g);
    int64_t t = 0;
    for (; outputs_left > 0; ++t) {
        MLSIM_CHECK(t < cap, "os cycle reference stopped making progress");

        // Edge reads: A[m][k] into row i at s + k + i, B[k][n] into column j at s + k + j.
        for (int64_t f = injecting; f < next; ++f) {
            const FoldCoord& c = log.coord[static_cast<size_t>(f)];
            const int64_t s = log.start[static_cast<size_t>(f)];
            if (t >= s + K - 1 + std::max(c.rows, c.cols)) {
                if (f == injecting) ++injecting;
                continue;
            }
            AccessCounts& n = log.counts[static_cast<size_t>(f)];
            for (int64_t i = 0; i < c.rows; ++i) {
                const int64_t k = t - s - i;
                if (k < 0 || k >= K) continue;
                Word& w = m_left[static_cast<size_t>(i * C)];
                MLSIM_CHECK(w.fold < 0, "two folds drive one row of the left edge in the same cycle");
                w = Word{a.at(c.row0 + i, k), static_cast<int32_t>(f), static_cast<int32_t>(k)};
                ++n.a_reads;
            }
            for (int64_t j = 0; j < c.cols; ++j) {
                const int64_t k = t - s - j;
                if (k < 0 || k >= K) continue;
                Word& w = m_top[static_cast<size_t>(j)];
                MLSIM_CHECK(w.fold < 0, "two folds drive one column of the top edge in the same cycle");
                w = Word{b.at(k, c.col0 + j), static_cast<int32_t>(f), static_cast<int32_t>(k)};
                ++n.b_reads;
            }
        }

        // PEs, from the bottom-right corner, so the left and upper neighbours still hold last cycle's
        // words when a PE takes them over: MAC, capture on the last step, then shift.
        for (int64_t i = R - 1; i >= 0; --i) {
            for (int64_t j = C - 1; j >= 0; --j) {
                const auto p = static_cast<size_t>(i * C + j);
                const Word wa = m_left[p], wb = m_top[p];
                if (wa.fold >= 0 || wb.fold >= 0) {
                    MLSIM_CHECK(wa.fold == wb.fold && wa.step == wb.step,
                                "A and B words of different steps meet in a PE");
                    const auto f = static_cast<size_t>(wa.fold);
                    const int64_t prod = wa.val * wb.val;
                    m_acc[p] = wa.step == 0 ? prod : m_acc[p] + prod;
                    ++log.counts[f].macs;
                    log.last_mac[f] = t;
                    if (wa.step == K - 1) {
                        const auto jj = static_cast<size_t>(j);
                        MLSIM_CHECK(drain_left[jj] == 0, "a PE captures its output while its column drains");
                        OutWord& o = m_out[p];
                        MLSIM_CHECK(o.fold < 0, "a shadow output register is still full");
                        const FoldCoord& c = log.coord[f];
                        o = OutWord{m_acc[p], (c.row0 + i) * N + c.col0 + j, wa.fold};
                        if (cap_fold[jj] != wa.fold) {
                            MLSIM_CHECK(cap_count[jj] == 0, "a column captures outputs of two folds at once");
                            cap_fold[jj] = wa.fold;
                        }
                        ++cap_count[jj];
                    }
                }
                if (j > 0 && m_left[p - 1].fold >= 0 &&
                    j < log.cols[static_cast<size_t>(m_left[p - 1].fold)]) {
                    m_left[p] = m_left[p - 1];
                    ++log.counts[static_cast<size_t>(m_left[p].fold)].a_hops;
                } else {
                    m_left[p].fold = -1;
                }
                const auto up = p - static_cast<size_t>(C);
                if (i > 0 && m_top[up].fold >= 0 && i < log.rows[static_cast<size_t>(m_top[up].fold)]) {
                    m_top[p] = m_top[up];
                    ++log.counts[static_cast<size_t>(m_top[p].fold)].b_hops;
                } else {
                    m_top[p].fold = -1;
                }
            }
        }

        // Drains: write the word leaving row R−1, shift the column's shadow registers down one.
        for (int64_t j = 0; j < C; ++j) {
            const auto jj = static_cast<size_t>(j);
            if (drain_left[jj] == 0) continue;
            const OutWord& bottom = m_out[static_cast<size_t>((R - 1) * C + j)];
            if (bottom.fold >= 0) {
                const auto f = static_cast<size_t>(bottom.fold);
                run.c.data[static_cast<size_t>(bottom.index)] = bottom.val;
                ++log.counts[f].out_writes;
                log.last_write[f] = t;
                --outputs_left;
            }
            for (int64_t i = R - 1; i >= 1; --i) {
                OutWord& o = m_out[static_cast<size_t>(i * C + j)];
                o = m_out[static_cast<size_t>((i - 1) * C + j)];
                if (o.fold >= 0) ++log.counts[static_cast<size_t>(o.fold)].out_hops;
            }
            m_out[jj].fold = -1;
            --drain_left[jj];
        }

        // Controllers, deciding for cycle t + 1. A column whose rows have all captured drains next.
        for (int64_t j = 0; j < C; ++j) {
            const auto jj = static_cast<size_t>(j);
            if (cap_fold[jj] >= 0 && cap_count[jj] == log.rows[static_cast<size_t>(cap_fold[jj])]) {
                MLSIM_CHECK(drain_left[jj] == 0, "a column starts a drain while draining");
                drain_left[jj] = R;
                cap_fold[jj] = -1;
                cap_count[jj] = 0;
            }
        }
        // The next fold starts once the edges are free of the previous stream and, statically, once its
        // first capture in column 0 (K − 1 cycles after it starts) falls after column 0 has drained the
        // previous fold (last capture r − 1 cycles after the first, then R drain cycles).
        if (next < F) {
            const auto prev = static_cast<size_t>(next - 1);
            const int64_t when = t + 1 + m_advance;
            const int64_t prev_first_capture = log.start[prev] + K - 1;
            const bool edges_free = when >= log.start[prev] + K;
            const bool chain_free = when + K - 1 > prev_first_capture + (log.rows[prev] - 1) + R;
            if (edges_free && chain_free) {
                log.start[static_cast<size_t>(next)] = log.preload[static_cast<size_t>(next)] = t + 1;
                ++next;
            }
        }
    }
    collect(log, t, run);
    return run;
}

CycleRun PeGrid::run_stationary(const FoldGeometry& g, const Matrix& a, const Matrix& b) {
    const bool ws = g.dataflow == Dataflow::ws;
    const int64_t R = g.array_rows, C = g.array_cols, T = g.t, N = b.cols, F = g.folds();
    FoldLog log(g);
    CycleRun run;
    run.c = Matrix(a.rows, b.cols);

    // ws: streamed X = A (X[step][k] = A[m][k]), stationary W = B, output (m, n0 + j).
    // is: streamed X = Bᵀ (X[step][k] = B[k][n]), stationary W = Aᵀ, output (m0 + j, n).
    auto x_word = [&](const FoldCoord& c, int64_t step, int64_t i) {
        return ws ? a.at(step, c.row0 + i) : b.at(c.row0 + i, step);
    };
    auto w_word = [&](const FoldCoord& c, int64_t i, int64_t j) {
        return ws ? b.at(c.row0 + i, c.col0 + j) : a.at(c.col0 + j, c.row0 + i);
    };
    auto out_index = [&](const FoldCoord& c, int64_t step, int64_t j) {
        return ws ? step * N + c.col0 + j : (c.col0 + j) * N + step;
    };
    auto stream_read = [&](AccessCounts& n) { ++(ws ? n.a_reads : n.b_reads); };
    auto stream_hop = [&](AccessCounts& n) { ++(ws ? n.a_hops : n.b_hops); };
    auto stat_read = [&](AccessCounts& n) { ++(ws ? n.b_reads : n.a_reads); };
    auto stat_hop = [&](AccessCounts& n) { ++(ws ? n.b_hops : n.a_hops); };

    // Per column: the fold the shadow chain holds or is loading, whether that load is complete, how
    // many of its PEs have copied it to their active register, the fold being loaded (−1: idle) and
    // how far, and the next fold to consider loading.
    const auto Cs = static_cast<size_t>(C);
    std::vector<int32_t> sh_fold(Cs, -1), load_fold(Cs, -1);
    std::vector<uint8_t> sh_complete(Cs, 0);
    std::vector<int64_t> copies(Cs, 0), load_step(Cs, 0), next_load(Cs, 0);
    // How many K folds have been added into each output word: they must arrive in order.
    std::vector<int32_t> k_folds_in(static_cast<size_t>(a.rows * b.cols), 0);

    int64_t outputs_left = T * g.row_folds * g.sc;
    int64_t next = 0, injecting = 0;

    // Controllers, deciding at the end of a cycle for cycle `t_next`.
    auto plan = [&](int64_t t_next) {
        // A column's shadow chain loads the next fold that uses the column once every PE of the column
        // has copied the previous load to its active register.
        for (size_t j = 0; j < Cs; ++j) {
            if (load_fold[j] >= 0) continue;
            while (next_load[j] < F && log.cols[static_cast<size_t>(next_load[j])] <= static_cast<int64_t>(j))
                ++next_load[j];
            if (next_load[j] >= F) continue;
            const int32_t held = sh_fold[j];
            if (held >= 0 && !(sh_complete[j] && copies[j] == log.rows[static_cast<size_t>(held)])) continue;
            const auto f = static_cast<int32_t>(next_load[j]++);
            load_fold[j] = sh_fold[j] = f;
            load_step[j] = 0;
            sh_complete[j] = 0;
            copies[j] = 0;
            if (j == 0) log.preload[static_cast<size_t>(f)] = t_next;
        }
        // A fold streams once the previous stream has left the edge and column 0 holds its load.
        if (next >= F) return;
        const auto nf = static_cast<size_t>(next);
        const int64_t adv = next > 0 ? m_advance : 0;
        if (next > 0 && t_next + adv < log.start[nf - 1] + T) return;
        if (sh_fold[0] != next) return;
        if (!sh_complete[0] && !(load_fold[0] == next && log.rows[nf] - load_step[0] <= adv)) return;
        log.start[nf] = t_next;
        ++next;
    };

    plan(0);
    const int64_t cap = cycle_cap(g);
    int64_t t = 0;
    for (; outputs_left > 0; ++t) {
        MLSIM_CHECK(t < cap, "ws/is cycle reference stopped making progress");

        // Edge reads: X[step][k0 + i] into row i at s + step + i.
        for (int64_t f = injecting; f < next; ++f) {
            const FoldCoord& c = log.coord[static_cast<size_t>(f)];
            const int64_t s = log.start[static_cast<size_t>(f)];
            if (t >= s + T - 1 + c.rows) {
                if (f == injecting) ++injecting;
                continue;
            }
            for (int64_t i = 0; i < c.rows; ++i) {
                const int64_t step = t - s - i;
                if (step < 0 || step >= T) continue;
                Word& w = m_left[static_cast<size_t>(i * C)];
                MLSIM_CHECK(w.fold < 0, "two folds drive one row of the left edge in the same cycle");
                w = Word{x_word(c, step, i), static_cast<int32_t>(f), static_cast<int32_t>(step)};
                stream_read(log.counts[static_cast<size_t>(f)]);
            }
        }

        // PEs, bottom-right first: each reads the partial sum its upper neighbour produced last cycle
        // before that neighbour overwrites it. Step 0 of a fold carries the token that swaps in the
        // shadow register. Rows below the fold pass partial sums down unchanged.
        for (int64_t i = R - 1; i >= 0; --i) {
            for (int64_t j = C - 1; j >= 0; --j) {
                const auto p = static_cast<size_t>(i * C + j);
                const auto jj = static_cast<size_t>(j);
                const Word x = m_left[p];
                const Word above = i > 0 ? m_top[p - Cs] : Word{};
                Word out = above;
                if (x.fold >= 0) {
                    if (x.step == 0) {
                        MLSIM_CHECK(sh_fold[jj] == x.fold && sh_complete[jj] && m_shadow_fold[p] == x.fold,
                                    "a fold reaches a PE before its stationary word is loaded");
                        m_active[p] = m_shadow[p];
                        m_active_fold[p] = x.fold;
                        ++copies[jj];
                    }
                    MLSIM_CHECK(m_active_fold[p] == x.fold, "a PE holds another fold's stationary word");
                    MLSIM_CHECK(i == 0 || (above.fold == x.fold && above.step == x.step),
                                "a partial sum meets a streamed word of another step");
                    out = Word{(i > 0 ? above.val : 0) + x.val * m_active[p], x.fold, x.step};
                    const auto f = static_cast<size_t>(x.fold);
                    ++log.counts[f].macs;
                    log.last_mac[f] = t;
                } else if (above.fold >= 0) {
                    MLSIM_CHECK(i >= log.rows[static_cast<size_t>(above.fold)],
                                "a partial sum reaches a used row without its streamed word");
                }
                if (i == R - 1) {
                    if (out.fold >= 0) {
                        // Leaves the array: K fold 0 writes, later K folds read, add and write back.
                        const auto f = static_cast<size_t>(out.fold);
                        const FoldCoord& c = log.coord[f];
                        const auto idx = static_cast<size_t>(out_index(c, out.step, j));
                        MLSIM_CHECK(k_folds_in[idx] == c.row_fold,
                                    "K folds of an output arrive out of order");
                        AccessCounts& n = log.counts[f];
                        if (c.row_fold > 0) {
                            run.c.data[idx] += out.val;
                            ++n.out_reads;
                        } else {
                            run.c.data[idx] = out.val;
                        }
                        ++k_folds_in[idx];
                        ++n.out_writes;
                        log.last_write[f] = t;
                        --outputs_left;
                    }
                } else {
                    m_top[p] = out;
                    if (out.fold >= 0) ++log.counts[static_cast<size_t>(out.fold)].out_hops;
                }
                if (j > 0 && m_left[p - 1].fold >= 0 &&
                    j < log.cols[static_cast<size_t>(m_left[p - 1].fold)]) {
                    m_left[p] = m_left[p - 1];
                    stream_hop(log.counts[static_cast<size_t>(m_left[p].fold)]);
                } else {
                    m_left[p].fold = -1;
                }
            }
        }

        // Shadow chains shift at the end of the cycle, after this cycle's copies: the word for row
        // r − 1 − step enters at the top, so after r shifts row i holds its own word.
        for (size_t j = 0; j < Cs; ++j) {
            if (load_fold[j] < 0) continue;
            const int32_t f = load_fold[j];
            const auto fs = static_cast<size_t>(f);
            const int64_t r = log.rows[fs];
            for (int64_t i = r - 1; i >= 1; --i) {
                const auto p = static_cast<size_t>(i) * Cs + j;
                m_shadow[p] = m_shadow[p - Cs];
                m_shadow_fold[p] = m_shadow_fold[p - Cs];
                if (m_shadow_fold[p] == f) stat_hop(log.counts[fs]);
            }
            m_shadow[j] = w_word(log.coord[fs], r - 1 - load_step[j], static_cast<int64_t>(j));
            m_shadow_fold[j] = f;
            stat_read(log.counts[fs]);
            if (++load_step[j] == r) {
                sh_complete[j] = 1;
                load_fold[j] = -1;
            }
        }

        plan(t + 1);
    }
    collect(log, t, run);
    return run;
}

}  // namespace mlsim::arch::systolic

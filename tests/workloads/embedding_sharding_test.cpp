// Embedding sharding (workloads/embedding_sharding.h) against hand-worked figures: every placement
// conserves each table, the collectives of a 2- and 4-rank case match their closed forms, memory is
// checked per rank, the planner is deterministic and balanced, and one table-wise rank is the
// single-device training step.
#include "workloads/embedding_sharding.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "experiment/experiment.h"
#include "sim/config/error.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::wl;
using arch::net::CollectiveKind;

namespace {

// A small DLRM: bottom 4 -> 8, three tables of dim 8 (rows 10, 7, 5; pooling 1, 2, 1), dot interaction,
// top -> 1. Batch B.
Model tiny_dlrm(int64_t B, DType dt = DType::fp32) {
    ModelBuilder mb("tiny-dlrm");
    const size_t bot = mb.add(make_op("bot", LinearAttr{0, 8, true}, {{B, 4}}, dt));
    const int64_t rows[] = {10, 7, 5}, pool[] = {1, 2, 1};
    std::vector<size_t> emb;
    for (int t = 0; t < 3; ++t)
        emb.push_back(
            mb.add(make_op("emb." + std::to_string(t), EmbeddingAttr{rows[t], 8, true, false, std::nullopt},
                           {{B, pool[t]}}, dt)));
    const size_t inter =
        mb.add(make_op("interaction", InteractionAttr{}, {{B, 8}, {B, 8}, {B, 8}, {B, 8}}, dt),
               {TensorRef{bot, 0}, TensorRef{emb[0], 0}, TensorRef{emb[1], 0}, TensorRef{emb[2], 0}});
    const Shape io = mb.op(inter).output();
    mb.add(make_op("top", LinearAttr{0, 1, true}, {io}, dt), {TensorRef{inter, 0}});
    return std::move(mb).build();
}

ShardingOptions opts(int64_t ranks, int64_t per_node = 0, bool training = true) {
    ShardingOptions o;
    o.ranks = ranks;
    o.ranks_per_node = per_node;
    o.training = training;
    return o;
}

std::vector<const Task*> comms(const std::vector<Task>& tasks, std::string_view purpose = {}) {
    std::vector<const Task*> out;
    for (const Task& t : tasks)
        if (t.comm && (purpose.empty() || t.comm->purpose == purpose)) out.push_back(&t);
    return out;
}

const Task* named(const std::vector<Task>& tasks, std::string_view name) {
    for (const Task& t : tasks)
        if (t.name == name) return &t;
    return nullptr;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "no error";
}

std::string write_temp(const std::string& name, const std::string& text) {
    const std::filesystem::path p = std::filesystem::temp_directory_path() / name;
    std::ofstream(p) << text;
    return p.string();
}

}  // namespace

TEST_CASE("Every placement conserves each table's rows and columns", "[sharding]") {
    const Model m = tiny_dlrm(8);
    for (int64_t W : {2, 4}) {
        for (ShardKind k :
             {ShardKind::table, ShardKind::row, ShardKind::column, ShardKind::table_row, ShardKind::data}) {
            const EmbeddingSharding s = place_embeddings(m, k, opts(W, 2));
            REQUIRE(s.tables.size() == 3);
            for (size_t t = 0; t < 3; ++t) {
                const EmbeddingTable& tb = s.tables[t];
                const TablePlacement& p = s.placements[t];
                CHECK(p.kind == k);
                int64_t cells = 0;
                std::map<std::pair<int64_t, int64_t>, int64_t> cover;  // (row, col) -> times held
                for (const TableShard& sh : p.shards) {
                    CHECK(sh.rank >= 0);
                    CHECK(sh.rank < W);
                    cells += sh.rows * sh.cols;
                    for (int64_t r = sh.row_begin; r < sh.row_begin + sh.rows; ++r)
                        for (int64_t c = sh.col_begin; c < sh.col_begin + sh.cols; ++c) ++cover[{r, c}];
                }
                const int64_t copies = k == ShardKind::data ? W : 1;
                CHECK(cells == copies * tb.rows * tb.dim);
                CHECK(static_cast<int64_t>(cover.size()) == tb.rows * tb.dim);
                for (const auto& [cell, n] : cover) CHECK(n == copies);
                if (k == ShardKind::table_row)
                    for (const TableShard& sh : p.shards) CHECK(sh.rank / 2 == p.node);
            }
        }
    }
}

TEST_CASE("Table-wise on 2 ranks: index, pooled and gradient all-to-alls match their closed forms",
          "[sharding]") {
    const int64_t B = 4, b = 2;
    const Model m = tiny_dlrm(B);
    const std::string f =
        write_temp("mlsim_tw2.yaml",
                   "embedding_sharding:\n  tables:\n    emb.0: {kind: table, rank: 0}\n"
                   "    emb.1: {kind: table, rank: 1}\n    emb.2: {kind: table, rank: 0}\n");
    const EmbeddingSharding s = load_embedding_sharding(f, m, opts(2));
    const ParallelLowering l = lower_embedding_sharding(m, s, opts(2));
    REQUIRE(l.rank_programs.size() == 2);
    // ids: b bags x (pooling x 8 B + 4 B of length) per table, to its owner.
    const int64_t to0 = b * (1 * 8 + 4) + b * (1 * 8 + 4), to1 = b * (2 * 8 + 4);
    // pooled: b x 8 x 4 B per table, from its owner to every rank.
    const int64_t from0 = 2 * b * 8 * 4, from1 = b * 8 * 4;
    for (int64_t r = 0; r < 2; ++r) {
        const StageProgram& p = l.program(r);
        const Task* ids = named(p.forward, "emb.table.ids_all_to_all");
        REQUIRE(ids);
        CHECK(ids->comm->collective == CollectiveKind::all_to_all);
        CHECK(ids->comm->axis == GroupAxis::data);
        CHECK(ids->comm->counts == std::vector<int64_t>{to0, to1, to0, to1});
        CHECK(ids->comm->bytes == to0 + to1);
        const Task* pooled = named(p.forward, "emb.table.pooled_all_to_all");
        REQUIRE(pooled);
        CHECK(pooled->comm->counts == std::vector<int64_t>{from0, from0, from1, from1});
        const Task* grad = named(p.backward, "emb.table.grad_all_to_all");
        REQUIRE(grad);
        CHECK(grad->comm->counts == std::vector<int64_t>{from0, from1, from0, from1});
        // The owner's lookups run all B bags and wait for the index all-to-all; the interaction waits for
        // the pooled embeddings.
        const Task* lookup = named(p.forward, r == 0 ? "emb.0" : "emb.1");
        REQUIRE(lookup);
        CHECK(lookup->op->inputs[0][0] == B);
        CHECK(std::find(lookup->deps.begin(), lookup->deps.end(), 0) != lookup->deps.end());
        const Task* inter = named(p.forward, "interaction");
        REQUIRE(inter);
        CHECK(inter->op->inputs[0][0] == b);
        const size_t pooled_at = static_cast<size_t>(pooled - p.forward.data());
        CHECK(std::find(inter->deps.begin(), inter->deps.end(), pooled_at) != inter->deps.end());
        // Dense gradients: one DDP bucket of the bottom (4 x 8 + 8) and top (14 + 1) weights.
        const std::vector<const Task*> dp = comms(p.backward, "dp_bucket");
        REQUIRE(dp.size() == 1);
        const int64_t inter_w = 8 + 4 * 3 / 2;  // dense 8 + 6 pairs of 4 features
        CHECK(dp[0]->comm->bytes == ((4 * 8 + 8) + (inter_w + 1)) * 4);
    }
    // Rank 0 holds emb.0 and emb.2, rank 1 emb.1: weights plus one FP32 Adagrad accumulator per row.
    const double dense = ((4 * 8 + 8) + (14 + 1)) * 4.0;
    CHECK(l.memory_of(0).weights_bytes == dense + (10 + 5) * 8 * 4.0);
    CHECK(l.memory_of(1).weights_bytes == dense + 7 * 8 * 4.0);
    CHECK(l.memory_of(0).optimizer_state_bytes == dense * 2 + (10 + 5) * 4.0);
    CHECK(l.memory_of(1).optimizer_state_bytes == dense * 2 + 7 * 4.0);
}

TEST_CASE("Rowwise Adagrad runs in the table's backward kernel: no gradient written, no step update",
          "[sharding]") {
    const int64_t B = 4;
    const Model m = tiny_dlrm(B);
    ShardingOptions fused = opts(2), unfused = opts(2);
    unfused.sparse_optimizer = "unfused";
    unfused.training_options.optimizer = "sgd";
    const ParallelLowering lf =
        lower_embedding_sharding(m, place_embeddings(m, ShardKind::table, fused), fused);
    const ParallelLowering lu =
        lower_embedding_sharding(m, place_embeddings(m, ShardKind::table, unfused), unfused);
    // emb.1 (7 rows, pooling 2) lives on one rank; find it there in both.
    int found = 0;
    for (int64_t r = 0; r < 2; ++r) {
        const Task* f = named(lf.program(r).backward, "emb.1.grad_weight");
        const Task* u = named(lu.program(r).backward, "emb.1.grad_weight");
        REQUIRE((f == nullptr) == (u == nullptr));
        if (!f) continue;
        ++found;
        CHECK(f->op->kind == "embedding_bag_backward_rowwise_adagrad");
        CHECK(u->op->kind == "embedding_bag_grad_weight");
        // B x 2 looked-up rows of 8 FP32 values and their FP32 accumulators, read and written; the pooled
        // gradient (B x 8 x 4 B) and the ids (B x 2 x 8 B) read, as the unfused gradient op reads them.
        const OpCounts c = f->op->counts();
        const double rows = B * 2.0;
        CHECK(c.weight_bytes == rows * 8 * 4 + rows * 4);
        CHECK(c.output_bytes == rows * 8 * 4 + rows * 4);
        CHECK(c.input_bytes == u->op->counts().input_bytes);
        CHECK(c.input_bytes == B * 8 * 4.0 + rows * 8);
        // No update in the step for a sharded table; the unfused one updates it there, from the written
        // gradient (read back), and moves more bytes in all.
        for (const Task& t : lf.program(r).step) CHECK(t.name.find("emb.1") == std::string::npos);
        const Task* up = named(lu.program(r).step, "emb.1.sgd_update");
        REQUIRE(up);
        CHECK(u->op->counts().output_bytes == rows * 8 * 4);
        CHECK(c.total_bytes() < u->op->counts().total_bytes() + up->op->counts().total_bytes());
    }
    CHECK(found == 1);
}

TEST_CASE("Row-wise on 2 ranks: bucketised indices, reduce-scatter forward, all-gather backward",
          "[sharding]") {
    const int64_t B = 4, b = 2;
    const Model m = tiny_dlrm(B);
    const EmbeddingSharding s = place_embeddings(m, ShardKind::row, opts(2));
    // ceil(rows / 2) blocks: 10 -> 5 + 5, 7 -> 4 + 3, 5 -> 3 + 2.
    CHECK(s.placements[1].shards[0].rows == 4);
    CHECK(s.placements[1].shards[1].rows == 3);
    const ParallelLowering l = lower_embedding_sharding(m, s, opts(2));
    // Rank i sends owner k the fraction rows_k / rows of its ids plus b lengths per table.
    const double to0 = b * (8.0 * 5 / 10 + 4) + b * (16.0 * 4 / 7 + 4) + b * (8.0 * 3 / 5 + 4);
    const double to1 = b * (8.0 * 5 / 10 + 4) + b * (16.0 * 3 / 7 + 4) + b * (8.0 * 2 / 5 + 4);
    for (int64_t r = 0; r < 2; ++r) {
        const StageProgram& p = l.program(r);
        const Task* ids = named(p.forward, "emb.row.ids_all_to_all");
        REQUIRE(ids);
        CHECK(ids->comm->counts[0] == std::llround(to0));
        CHECK(ids->comm->counts[1] == std::llround(to1));
        const Task* rs = named(p.forward, "emb.row.pooled_reduce_scatter");
        REQUIRE(rs);
        CHECK(rs->comm->collective == CollectiveKind::reduce_scatter);
        CHECK(rs->comm->bytes == B * 24 * 4);  // the B x (3 x 8) partial sums before splitting
        const Task* ag = named(p.backward, "emb.row.grad_all_gather");
        REQUIRE(ag);
        CHECK(ag->comm->collective == CollectiveKind::all_gather);
        CHECK(ag->comm->bytes == B * 24 * 4);
        CHECK(named(p.forward, "emb.table.ids_all_to_all") == nullptr);
    }
    // Shard lookups gather the rows of their share: ceil(B x rows_k / rows) bags.
    CHECK(named(l.program(1).forward, "emb.1.shard1")->op->inputs[0] == Shape{2, 2});
}

TEST_CASE("Column-wise on 2 ranks: two 4-wide blocks per table, each a table-wise shard", "[sharding]") {
    const int64_t B = 4, b = 2;
    const Model m = tiny_dlrm(B);
    // dim 8 is below the default block width (32): one block; a file asks for two.
    for (const TablePlacement& p : place_embeddings(m, ShardKind::column, opts(2)).placements)
        CHECK(p.shards.size() == 1);
    const std::string f =
        write_temp("mlsim_cw2.yaml",
                   "embedding_sharding:\n  default: column\n  tables:\n"
                   "    emb.0: {kind: column, ranks: [0, 1]}\n    emb.1: {kind: column, ranks: [1, 0]}\n"
                   "    emb.2: {kind: column, ranks: [0, 1]}\n");
    const EmbeddingSharding s = load_embedding_sharding(f, m, opts(2));
    for (const TablePlacement& p : s.placements) {
        REQUIRE(p.shards.size() == 2);
        CHECK(p.shards[0].cols == 4);
        CHECK(p.shards[0].rank != p.shards[1].rank);
    }
    const ParallelLowering l = lower_embedding_sharding(m, s, opts(2));
    const Task* pooled = named(l.program(0).forward, "emb.column.pooled_all_to_all");
    REQUIRE(pooled);
    // Every rank owns one 4-wide block of each of the 3 tables: b x 4 x 4 B x 3 to each rank.
    CHECK(pooled->comm->counts == std::vector<int64_t>(4, b * 4 * 4 * 3));
    // The indices go to both blocks' owners: b x (pooling x 8 + 4) per table per owner.
    const int64_t ids = b * (12 + 20 + 12);
    CHECK(named(l.program(1).forward, "emb.column.ids_all_to_all")->comm->counts ==
          std::vector<int64_t>(4, ids));
}

TEST_CASE("Table-row-wise on 2 nodes of 2: intra-node reduce-scatter, cross-node all-to-all", "[sharding]") {
    const int64_t B = 8, b = 2;
    const Model m = tiny_dlrm(B);
    const std::string f =
        write_temp("mlsim_twrw.yaml",
                   "embedding_sharding:\n  tables:\n    emb.0: {kind: table-row, node: 0}\n"
                   "    emb.1: {kind: table-row, node: 1}\n    emb.2: {kind: table-row, node: 1}\n");
    const EmbeddingSharding s = load_embedding_sharding(f, m, opts(4, 2));
    const ParallelLowering l = lower_embedding_sharding(m, s, opts(4, 2));
    CHECK(l.group(3, GroupAxis::expert) == std::vector<int64_t>{2, 3});
    CHECK(l.group(3, GroupAxis::expert_data) == std::vector<int64_t>{1, 3});
    // Node 0 holds 8 columns, node 1 holds 16: B x D_n x 4 B reduce-scattered inside the node.
    CHECK(named(l.program(0).forward, "emb.table-row.pooled_reduce_scatter")->comm->bytes == B * 8 * 4);
    CHECK(named(l.program(2).forward, "emb.table-row.pooled_reduce_scatter")->comm->bytes == B * 16 * 4);
    // Cross-node: local rank l of node n sends b x D_n x 4 B to each node's rank l.
    const Task* x = named(l.program(1).forward, "emb.table-row.pooled_all_to_all");
    REQUIRE(x);
    CHECK(x->comm->axis == GroupAxis::expert_data);
    CHECK(x->comm->counts == std::vector<int64_t>{b * 8 * 4, b * 8 * 4, b * 16 * 4, b * 16 * 4});
    const Task* g = named(l.program(1).backward, "emb.table-row.grad_all_to_all");
    REQUIRE(g);
    CHECK(g->comm->counts == std::vector<int64_t>{b * 8 * 4, b * 16 * 4, b * 8 * 4, b * 16 * 4});
    CHECK(named(l.program(1).backward, "emb.table-row.grad_all_gather")->comm->bytes == B * 8 * 4);
}

TEST_CASE("Data-parallel tables: local lookups, their dense gradients in the DDP buckets", "[sharding]") {
    const Model m = tiny_dlrm(4);
    const ParallelLowering l =
        lower_embedding_sharding(m, place_embeddings(m, ShardKind::data, opts(2)), opts(2));
    for (int64_t r = 0; r < 2; ++r) {
        const StageProgram& p = l.program(r);
        CHECK(comms(p.forward).empty());
        const std::vector<const Task*> dp = comms(p.backward, "dp_bucket");
        REQUIRE(dp.size() == 1);
        CHECK(dp[0]->comm->bytes == ((4 * 8 + 8) + (14 + 1) + (10 + 7 + 5) * 8) * 4);
        CHECK(named(p.forward, "emb.1")->op->inputs[0] == Shape{2, 2});
    }
}

TEST_CASE("Inference shards the forward only", "[sharding]") {
    const Model m = tiny_dlrm(4);
    const ParallelLowering l = lower_embedding_sharding(
        m, place_embeddings(m, ShardKind::table, opts(2, 0, false)), opts(2, 0, false));
    for (int64_t r = 0; r < 2; ++r) {
        CHECK(l.program(r).backward.empty());
        CHECK(l.program(r).step.empty());
        CHECK(comms(l.program(r).forward).size() == 2);
        CHECK(l.memory_of(r).optimizer_state_bytes == 0);
    }
}

TEST_CASE("Table-wise on one rank is the single-device training step", "[sharding]") {
    const Model m = tiny_dlrm(6);
    ShardingOptions o = opts(1);
    o.sparse_optimizer = "unfused";
    const ParallelLowering l = lower_embedding_sharding(m, place_embeddings(m, ShardKind::table, o), o);
    std::multiset<std::tuple<std::string, std::string, double, double>> got, want;
    for (const std::vector<Task>* sec : {&l.program(0).forward, &l.program(0).backward, &l.program(0).step})
        for (const Task& t : *sec) {
            REQUIRE(t.op);  // no communication on one rank
            got.insert({t.op->name, t.op->kind, t.op->counts().flops, t.op->counts().total_bytes()});
        }
    const Model single = lower_training(m, TrainingOptions{});
    for (const Op& op : single.ops())
        want.insert({op.name, op.kind, op.counts().flops, op.counts().total_bytes()});
    CHECK(got == want);
    CHECK(l.rank_flops(0) == Approx(l.model_flops));
}

TEST_CASE("Per-rank memory over capacity is a located error naming the rank and the excess", "[sharding]") {
    const Model m = tiny_dlrm(4);
    ShardingOptions o = opts(2);
    const ParallelLowering l = lower_embedding_sharding(m, place_embeddings(m, ShardKind::table, o), o);
    o.capacity_bytes = 1000;
    o.device_name = "tiny";
    const std::string e =
        error_of([&] { check_embedding_memory(l, place_embeddings(m, ShardKind::table, opts(2)), o); });
    CHECK_THAT(e, Catch::Contains("<command line>") && Catch::Contains("--embedding-sharding") &&
                      Catch::Contains("rank 0") && Catch::Contains("GB over") && Catch::Contains("'tiny'"));
    o.capacity_bytes = 1e12;
    CHECK(error_of([&] { check_embedding_memory(l, place_embeddings(m, ShardKind::table, opts(2)), o); }) ==
          "no error");
    // A placement that cannot fit is refused while placing, naming the table and the rank.
    o.capacity_bytes = 1200;
    const std::string p = error_of([&] { place_embeddings(m, ShardKind::data, o); });
    CHECK_THAT(
        p, Catch::Contains("embedding table 'emb.") && Catch::Contains("rank") && Catch::Contains("over"));
}

TEST_CASE("Placement files: unknown tables, kinds and ranks are located errors", "[sharding]") {
    const Model m = tiny_dlrm(4);
    auto err = [&](const std::string& text) {
        const std::string f = write_temp("mlsim_bad_sharding.yaml", text);
        return error_of([&] { load_embedding_sharding(f, m, opts(2)); });
    };
    CHECK_THAT(err("embedding_sharding:\n  tables:\n    emb.7: row\n"),
               Catch::Contains("mlsim_bad_sharding.yaml:3") && Catch::Contains("no embedding table 'emb.7'"));
    CHECK_THAT(err("embedding_sharding:\n  tables:\n    emb.1: rows\n"),
               Catch::Contains(":3:") && Catch::Contains("unknown sharding kind 'rows'") &&
                   Catch::Contains("did you mean 'row'"));
    CHECK_THAT(err("embedding_sharding:\n  tables:\n    emb.1: {kind: table, rank: 2}\n"),
               Catch::Contains("rank 2 out of range"));
    CHECK_THAT(err("embedding_sharding:\n  tablez: {}\n"), Catch::Contains("unknown key 'tablez'"));
    // Unlisted tables are planned; `default` places them all in one kind.
    const std::string f =
        write_temp("mlsim_partial.yaml",
                   "embedding_sharding:\n  default: row\n  tables:\n    emb.0: {kind: table, rank: 1}\n");
    const EmbeddingSharding s = load_embedding_sharding(f, m, opts(2));
    CHECK(s.placements[0].kind == ShardKind::table);
    CHECK(s.placements[0].shards[0].rank == 1);
    CHECK(s.placements[1].kind == ShardKind::row);
    CHECK(s.placements[2].kind == ShardKind::row);
}

TEST_CASE("The planner is deterministic and balances table-wise load within one table's cost", "[sharding]") {
    ZooOptions zo;
    zo.batch = 2048;
    const Model m = zoo_build("dlrm-mlperf", zo);
    ShardingOptions o = opts(8);
    o.capacity_bytes = 80e9;  // A100 80 GB
    const EmbeddingSharding a = plan_embedding_sharding(m, o), b = plan_embedding_sharding(m, o);
    double total = 0, largest = 0;
    size_t tw = 0, dp = 0;
    for (size_t t = 0; t < a.tables.size(); ++t) {
        CHECK(a.placements[t].kind == b.placements[t].kind);
        CHECK(a.placements[t].shards.front().rank == b.placements[t].shards.front().rank);
        if (a.placements[t].kind == ShardKind::table) {
            ++tw;
            const double c = table_cost_bytes(a.tables[t], 2048, true);
            total += c;
            largest = std::max(largest, c);
        }
        if (a.placements[t].kind == ShardKind::data) ++dp;
    }
    CHECK(tw + dp == a.tables.size());
    CHECK(dp > 0);  // the tiny tables (3, 4, 10 rows) replicate
    const std::vector<ShardLoad> loads = sharding_loads(a, o);
    double most = 0;
    for (const ShardLoad& l : loads) {
        most = std::max(most, l.cost_bytes);
        CHECK(l.table_bytes < 80e9);
    }
    CHECK(most <= total / 8 + largest + 1e-6);
    // A capacity that no single rank can meet for the 40 M-row tables sends them row-wise.
    o.capacity_bytes = 16e9;
    const EmbeddingSharding r = plan_embedding_sharding(m, o);
    CHECK(r.placements[0].kind == ShardKind::row);  // table 0: 39.9 M x 128 x 4 B = 20.4 GB
    for (const ShardLoad& l : sharding_loads(r, o)) CHECK(l.table_bytes < 16e9);
}

TEST_CASE("dgx-a100-16node: 128 A100 in 16 nodes, half the NICs across its bisection", "[sharding]") {
    const arch::SystemSpec s = exp::load_system_file(exp::resolve_system_path("dgx-a100-16node"));
    CHECK(s.device_count == 128);
    CHECK(s.nodes.size() == 16);
    // Non-blocking rail-optimised fabric: 8 nodes x 8 HDR NICs of 25 GB/s cross.
    CHECK(s.bisection_Bps() == Approx(64 * 25e9));
    // The sharding options see 16 nodes of 8.
    exp::ExperimentOptions o;
    o.mode = "training";
    const ShardingOptions so = exp::sharding_options(o, s);
    CHECK(so.ranks == 128);
    CHECK(so.ranks_per_node == 8);
    CHECK(so.capacity_bytes == Approx(80.0 * 1024 * 1024 * 1024));
}

TEST_CASE("mlsim run --embedding-sharding: a file that overfills a rank is an error at its line",
          "[sharding]") {
    const std::string f =
        write_temp("mlsim_overfull.yaml",
                   "embedding_sharding:\n  tables:\n    emb.0: {kind: table, rank: 1}\n"
                   "    emb.9: {kind: table, rank: 1}\n    emb.19: {kind: table, rank: 1}\n"
                   "    emb.20: {kind: table, rank: 1}\n    emb.21: {kind: table, rank: 1}\n");
    exp::ExperimentOptions o;
    o.system = "dgx-a100-node";
    o.model = "dlrm-mlperf";
    o.mode = "training";
    o.batch = 8192;
    o.embedding_sharding = f;
    // Four 40 M-row FP32 tables (20.5 GB each with their accumulators) fill rank 1's 80 GiB; the fifth
    // does not fit.
    const std::string e = error_of([&] { exp::prepare_experiment(o); });
    CHECK_THAT(e, Catch::Contains("mlsim_overfull.yaml:7") && Catch::Contains("embedding table 'emb.21'") &&
                      Catch::Contains("rank 1 has") && Catch::Contains("GB over"));
    // Auto on the same system fits, and the lowering has one program per rank.
    o.embedding_sharding = "auto";
    const exp::PreparedExperiment p = exp::prepare_experiment(o);
    REQUIRE(p.result->parallel);
    CHECK(p.result->parallel->rank_programs.size() == 8);
    CHECK(p.result->resolved_yaml.find("embedding_sharding: auto") != std::string::npos);
    // Other plans do not combine with it.
    o.tensor_parallel = 2;
    CHECK_THAT(error_of([&] { exp::prepare_experiment(o); }), Catch::Contains("--embedding-sharding"));
}

TEST_CASE("On many nodes the planner spreads tables too coarse to balance table-wise over a node",
          "[sharding]") {
    ZooOptions zo;
    zo.batch = 128 * 64;
    const Model m = zoo_build("dlrm-mlperf", zo);
    auto count = [](const EmbeddingSharding& s, ShardKind k) {
        int n = 0;
        for (const TablePlacement& p : s.placements) n += p.kind == k;
        return n;
    };
    // 2 nodes of 8: ~15 non-replicated tables on 16 ranks balance table-wise (one table < 2 x mean load).
    ShardingOptions two = opts(16, 8);
    two.capacity_bytes = 80e9;
    const EmbeddingSharding a = plan_embedding_sharding(m, two);
    CHECK(count(a, ShardKind::table_row) == 0);
    CHECK(count(a, ShardKind::table) > 0);
    // 16 nodes of 8: a table is > 2 x the mean per-rank load, so it spreads over a node's 8 ranks.
    ShardingOptions many = opts(128, 8);
    many.capacity_bytes = 80e9;
    const EmbeddingSharding b = plan_embedding_sharding(m, many);
    CHECK(count(b, ShardKind::table) == 0);
    CHECK(count(b, ShardKind::table_row) + count(b, ShardKind::data) == 26);
    CHECK(count(b, ShardKind::table_row) > 0);
    for (const TablePlacement& p : b.placements)
        if (p.kind == ShardKind::table_row) CHECK(p.shards.size() == 8);
}

TEST_CASE("Dense bottom on one rank: all B samples there, its output one more pooled vector, no all-reduce",
          "[sharding]") {
    // NVIDIA DeepLearningExamples' PyTorch DLRM: the bottom MLP on GPU 0, the tables on the other GPUs.
    const int64_t B = 4, b = 2;
    const Model m = tiny_dlrm(B);
    const std::string f = write_temp("mlsim_bottom0.yaml",
                                     "embedding_sharding:\n  dense_bottom: {rank: 0}\n  tables:\n"
                                     "    emb.0: {kind: table, rank: 1}\n    emb.1: {kind: table, rank: 1}\n"
                                     "    emb.2: {kind: table, rank: 1}\n");
    const EmbeddingSharding s = load_embedding_sharding(f, m, opts(2));
    REQUIRE(s.bottom_rank == 0);
    const ParallelLowering l = lower_embedding_sharding(m, s, opts(2));
    // Pooled: rank 0 sends the bottom's b x 8 FP32 output to each rank, rank 1 its three tables'.
    const int64_t from0 = b * 8 * 4, from1 = 3 * b * 8 * 4;
    const int64_t inter_w = 8 + 4 * 3 / 2;
    for (int64_t r = 0; r < 2; ++r) {
        const StageProgram& p = l.program(r);
        const Task* pooled = named(p.forward, "emb.table.pooled_all_to_all");
        REQUIRE(pooled);
        CHECK(pooled->comm->counts == std::vector<int64_t>{from0, from0, from1, from1});
        const Task* grad = named(p.backward, "emb.table.grad_all_to_all");
        REQUIRE(grad);
        CHECK(grad->comm->counts == std::vector<int64_t>{from0, from1, from0, from1});
        // Only the top's weights are all-reduced.
        const std::vector<const Task*> dp = comms(p.backward, "dp_bucket");
        REQUIRE(dp.size() == 1);
        CHECK(dp[0]->comm->bytes == (inter_w + 1) * 4);
        CHECK(named(p.forward, "interaction")->op->inputs[0][0] == b);
        const Task* bot = named(p.forward, "bot");
        if (r == 1) {
            CHECK(bot == nullptr);
            continue;
        }
        REQUIRE(bot);
        CHECK(bot->op->inputs[0][0] == B);
        CHECK(bot->deps.empty());  // it reads the dense input, not the index all-to-all
        // The pooled all-to-all waits for it; its backward waits for the gradient all-to-all.
        const size_t bot_at = static_cast<size_t>(bot - p.forward.data());
        CHECK(std::find(pooled->deps.begin(), pooled->deps.end(), bot_at) != pooled->deps.end());
        const Task* bw = named(p.backward, "bot.grad_weight");
        REQUIRE(bw);
        const size_t grad_at = static_cast<size_t>(grad - p.backward.data());
        CHECK(std::find(bw->deps.begin(), bw->deps.end(), grad_at) != bw->deps.end());
        const size_t dp_at = static_cast<size_t>(dp[0] - p.backward.data());
        for (const Task& t : p.step)
            if (t.op && t.op->forward_of == "bot")
                CHECK(std::find(t.after_backward.begin(), t.after_backward.end(), dp_at) ==
                      t.after_backward.end());
    }
    // The bottom's weights live on rank 0 only.
    const double top = (inter_w + 1) * 4.0, bottom = (4 * 8 + 8) * 4.0;
    CHECK(l.memory_of(0).weights_bytes == top + bottom);
    CHECK(l.memory_of(1).weights_bytes == top + (10 + 7 + 5) * 8 * 4.0);
    // The step's FLOPs are those of the data-parallel bottom: the work moved, not changed.
    auto flops = [](const ParallelLowering& x) {
        double s = 0;
        for (int64_t r = 0; r < 2; ++r)
            for (const Task& t : x.program(r).forward)
                if (t.op) s += t.op->counts().flops;
        return s;
    };
    const std::string g = write_temp("mlsim_bottom_dp.yaml",
                                     "embedding_sharding:\n  dense_bottom: data\n  tables:\n"
                                     "    emb.0: {kind: table, rank: 1}\n    emb.1: {kind: table, rank: 1}\n"
                                     "    emb.2: {kind: table, rank: 1}\n");
    const EmbeddingSharding sd = load_embedding_sharding(g, m, opts(2));
    CHECK_FALSE(sd.bottom_rank);
    CHECK(flops(l) == Approx(flops(lower_embedding_sharding(m, sd, opts(2)))));
    // Bad values are located errors.
    auto err = [&](const std::string& text) {
        const std::string p = write_temp("mlsim_bad_bottom.yaml", text);
        return error_of([&] { load_embedding_sharding(p, m, opts(2)); });
    };
    CHECK_THAT(err("embedding_sharding:\n  dense_bottom: {rank: 2}\n"),
               Catch::Contains("mlsim_bad_bottom.yaml:2") && Catch::Contains("rank 2 out of range"));
    CHECK_THAT(err("embedding_sharding:\n  dense_bottom: gpu0\n"),
               Catch::Contains(":2:") && Catch::Contains("expected data"));
    CHECK_THAT(err("embedding_sharding:\n  dense_bottom: {rnak: 0}\n"),
               Catch::Contains("unknown key 'rnak'"));
}

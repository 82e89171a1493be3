#pragma once
// Embedding sharding (issue 13, section 3): where the embedding tables of a recommendation model (DLRM)
// live on a multi-device system, the communication each placement implies, and the per-rank programs and
// memory that follow, as a ParallelLowering (workloads/parallel.h) with one program per rank
// (rank_programs, rank_memory), so the execution engine runs it like any other lowering.
//
// Sources: TorchRec's sharding types and their distributions (pytorch.org/torchrec, "TorchRec Concepts" and
// torchrec.distributed.sharding: tw_sharding, rw_sharding, cw_sharding, twrw_sharding, dp_sharding);
// Mudigere et al., "Software-Hardware Co-design for Fast and Scalable Training of Deep Learning
// Recommendation Models", arXiv:2104.05158 (section 4: table-wise, row-wise, column-wise, data-parallel
// placements and their all-to-all / reduce-scatter patterns); FBGEMM's table-batched embedding with the
// optimizer fused into its backward (fbgemm_gpu, rowwise_adagrad: one FP32 accumulator per row).
//
// Contract:
// - Tables: every embedding-bag op fed by a model input (its indices) is a table; its rows, dim and
//   pooling factor (input [B, pooling]) come from the op. The rest of the model is the dense part.
// - Placements (ShardKind), with the global batch B split over the W ranks (b = B / W per rank), k shards:
//   table:     the whole table on one rank. Forward: all-to-all of the lookup indices to the owner, the
//              owner looks up all B bags, all-to-all of the pooled embeddings back (b x dim to each rank).
//              Backward: all-to-all of the pooled-embedding gradients to the owner (the transpose).
//   column:    the dim split into k column blocks (sizes differ by at most one), each on its own rank and
//              communicated as a table-wise shard of that width (the indices go to every block's owner).
//              Default k = min(W, dim / 32), at least 1: blocks of at least 32 columns (est., see the .cpp).
//   row:       the rows split over all W ranks in blocks of ceil(rows / W) (the last smaller, TorchRec's
//              even row split). Forward: all-to-all of the indices bucketised by row range (rank i sends
//              owner k the fraction rows_k / rows of its indices: indices are assumed uniform over the rows,
//              stated), each shard pools its rows into partial sums for all B samples, reduce-scatter of
//              the B x dim partial sums (each rank keeps its b). Backward: all-gather of the b x dim
//              gradients (B x dim on every shard).
//   table_row: the rows split over the L ranks of one node. Forward: indices all-to-all over all ranks to
//              the node's shards, an intra-node reduce-scatter of the node's B x dim partial sums (local
//              rank l keeps the samples of the ranks with local index l on every node), then an all-to-all
//              over the ranks with the same local index (cross-node) delivering b x dim to each. Backward:
//              the cross-node all-to-all of gradients, then the intra-node all-gather.
//   data:      a copy on every rank, looked up locally for its b bags; no forward communication; backward
//              the dense table gradient (rows x dim) is all-reduced with the dense part's buckets.
//   Tables of one kind share one collective per distribution (TorchRec batches the features of a sharding
//   type into one KJT all-to-all and one pooled-embedding distribution); the kinds' collectives are
//   separate. Index messages count 8 bytes per id (op.h) plus 4 bytes of length per bag and destination
//   (TorchRec's KeyedJaggedTensor lengths, int32 (est.)). Uneven shards give all-to-allv counts
//   (CommOp::counts, p x p in group order).
// - Dense part (bottom and top MLPs, interaction, DCN cross layers): data-parallel over all W ranks at
//   batch b; weight gradients all-reduced in 25 MiB buckets (PyTorch DDP's bucket_cap_mb) in the order
//   backward produces them, data-parallel tables' gradients with them.
// - Dense bottom on one rank (EmbeddingSharding::bottom_rank, the file's `dense_bottom: {rank: R}`; W > 1):
//   the forward ops no table feeds, directly or not (DLRM's bottom MLP), run model-parallel on rank R for
//   all B samples, as NVIDIA DeepLearningExamples' PyTorch DLRM places them (its README, "Embedding table
//   placement and load balancing": the bottom MLP on GPU 0; dlrm/utils/distributed.py get_device_mapping,
//   dlrm/model/distributed.py BottomToTop): each output a non-bottom op reads is one more vector of the
//   table-wise pooled all-to-all (R sends b x width to every rank; the gradient comes back in the
//   transposed all-to-all); the bottom's backward runs after that gradient all-to-all and its weight
//   gradients are not all-reduced (they live on R only).
// - Groups: the world (GroupAxis::data, plan data = W); the ranks of one node and the ranks with the same
//   local index on every node are the plan's expert-parallel groups with plan.expert = L, the ranks per
//   node (GroupAxis::expert: L consecutive ranks; GroupAxis::expert_data: the W / L ranks r mod L alike),
//   so ParallelLowering::group() resolves them unchanged; L divides W. No op of the lowering is an expert.
// - Programs: forward: the index all-to-alls first, then the dense ops that do not read pooled
//   embeddings (bottom MLP, data-parallel lookups), the rank's shard lookups (each after its kind's index
//   all-to-all), each kind's output distribution (after the rank's lookups of that kind), then the ops that
//   read pooled embeddings. Backward: the dense backward ops (the gradient distributions issued after the
//   ops that produce the pooled-embedding gradients), then the shard backward ops, each after its kind's
//   gradient distribution; DDP buckets after their producers. Step: the optimizer updates (dense ones
//   after their bucket, shard ones after their backward op; none for shards under rowwise_adagrad, whose
//   backward kernel updates them). Collectives of a group are issued in the same
//   order, with the same name, on every member. A group of one rank gets no comm task.
// - Sparse optimizer: "rowwise_adagrad" (default: FBGEMM's EXACT_ROWWISE_ADAGRAD, TorchRec's and the
//   DLRM references' sparse optimizer; fused into the backward, so no gradient tensor is kept): state
//   4 bytes (one FP32) per row of each shard; update 4 FLOPs per element of a touched row plus 3 per row.
//   A shard's backward is then one kernel (rowwise_fused_backward, kind <lookup>_backward_rowwise_adagrad):
//   it reads the pooled gradient and the ids, reads and writes each looked-up row and its accumulator
//   (duplicate ids counted as separate rows: FBGEMM merges them first, so this is an upper bound), and
//   writes no gradient. "unfused" (run option --sparse-optimizer unfused): the training optimizer as
//   workloads/training.h applies it, on the touched rows after the backward wrote their gradient out
//   (torch.optim.SGD on sparse gradients, as NVIDIA's DLRM example; for comparing with a single-device
//   run). Data-parallel tables: their all-reduced gradient is dense, so their update covers every row,
//   after it, as a separate kernel under either optimizer.
// - Table and pooled types: a table's rows, gradients and updates are in its op's dtype; its pooled vectors
//   (and their gradients), as computed and as sent, in EmbeddingAttr::output_dtype where set (FP32 tables
//   whose lookups are cast to FP16: run option --embedding-dtype), else the op's dtype.
// - Memory per rank (rank_memory): shard weights (rows x cols x dtype) and their optimizer state (row-wise
//   Adagrad: 4 B per row; the training optimizer: its states in the table's type, no FP32 master copy, as
//   its update moves them: table_state_bytes_per_param); dense weights, gradients and optimizer state as
//   op_state_bytes_per_param (the ZeRO paper's accounting; an embedding bag's in its table's type); data-
//   parallel tables whole, with a dense gradient; activations: the forward tensors the rank's backward reads
//   (training) or its largest op's input and output (inference). check_embedding_memory() throws a located
//   UserError naming the rank, its breakdown and how far over its device's capacity it is.
// - Planner (plan_embedding_sharding, "auto"), greedy and deterministic: a table's cost is the bytes one
//   step moves for it if placed table-wise (lookup rows read B x pooling x dim x dtype, plus its index and
//   pooled-embedding messages, doubled in training for the gradients); its memory is its weights plus
//   optimizer state. (1) A table is data-parallel (W > 1; it must fit every rank) when
//   the bytes a ring all-reduce moves per rank for its dense gradient, 2 x rows x dim x dtype, are no more
//   than its table-wise messages per step shared over the W ranks (each rank owns and sends its share of
//   the tables): so only tables of a few thousand rows replicate, at any scale. (2) On a multi-node system, a
//   table whose cost exceeds twice the mean per-rank load (total cost of the tables of step 2 / W: tables too
//   few and coarse to balance table-wise, each owner's NIC carrying a whole table's pooled embeddings) goes
//   table-row-wise to the least-loaded node with room, spreading it over the node's L NICs. (3) The others,
//   by cost descending (then memory, then model order), go table-wise to the least-loaded rank (load = the
//   costs placed on it; ties to the lowest rank) among those with room. (4) A table no single rank holds goes
//   table-row-wise to the least-loaded node whose ranks all have room for a 1/L share (multi-node only),
//   else row-wise over all ranks, else it is a located error naming the table, the fullest rank and by how
//   much. Bound (tested): with only table-wise tables, the largest rank load <= mean load + the largest
//   table cost (list scheduling).
// - Given placements: `--embedding-sharding table|row|column|table-row|data` puts every table in that
//   kind (table and column shards placed greedily as above, table-row on the least-loaded node); a YAML
//   file (configs/README.md, "Embedding sharding") fixes some or all tables; the rest are planned. Unknown
//   tables (with a suggestion), unknown kinds, ranks or nodes out of range, and shards that do not fit are
//   located UserErrors (file:line:col and key).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sim/config/error.h"
#include "workloads/model.h"
#include "workloads/parallel.h"

namespace mlsim::wl {

enum class ShardKind { table, row, column, table_row, data };
std::string to_string(ShardKind k);
std::optional<ShardKind> parse_shard_kind(std::string_view s);  // table|row|column|table-row|data
// What is wrong with an embedding-sharding value (auto, a kind, or a placement file's path), "" when it
// names one of those: an unknown word that is no file ('autox') is named with the nearest kind.
std::string embedding_sharding_spec_error(const std::string& spec);

struct EmbeddingTable {
    std::string name;
    size_t op = 0;  // index in the model
    int64_t rows = 0, dim = 0, pooling = 1;
    DType dtype = DType::fp32;      // the table's rows (lookups, gradients, updates)
    DType out_dtype = DType::fp32;  // its pooled vectors, as sent (EmbeddingAttr::output_dtype)
};
// The tables of a model (see the contract), in model order.
std::vector<EmbeddingTable> embedding_tables(const Model& m);

struct TableShard {
    int64_t rank = 0;
    int64_t row_begin = 0, rows = 0;
    int64_t col_begin = 0, cols = 0;
};

struct TablePlacement {
    ShardKind kind = ShardKind::table;
    std::vector<TableShard> shards;  // data: one per rank, each the whole table
    int64_t node = 0;                // table_row: the node holding it
};

struct ShardingOptions {
    int64_t ranks = 1;
    int64_t ranks_per_node = 0;  // 0: all ranks in one node
    bool training = true;
    TrainingOptions training_options;                  // the dense optimizer
    std::string sparse_optimizer = "rowwise_adagrad";  // rowwise_adagrad | unfused
    int64_t bucket_bytes = 25LL * 1024 * 1024;
    double capacity_bytes = 0;  // per rank; 0 = unlimited (the planner ignores memory)
    std::string device_name;
    // Per rank when the ranks' devices differ (a system of several device types); empty: capacity_bytes and
    // device_name for every rank.
    std::vector<double> rank_capacity_bytes;
    std::vector<std::string> rank_device_names;
    double capacity_of(int64_t rank) const {
        return static_cast<size_t>(rank) < rank_capacity_bytes.size()
                   ? rank_capacity_bytes[static_cast<size_t>(rank)]
                   : capacity_bytes;
    }
    const std::string& device_of(int64_t rank) const {
        return static_cast<size_t>(rank) < rank_device_names.size()
                   ? rank_device_names[static_cast<size_t>(rank)]
                   : device_name;
    }
    // Where the sharding was asked for, for errors.
    cfg::SourceLoc loc{"<command line>", 0, 0};
    std::string key = "--embedding-sharding";
};

struct EmbeddingSharding {
    std::vector<EmbeddingTable> tables;
    std::vector<TablePlacement> placements;  // one per table, same order
    int64_t ranks = 1, ranks_per_node = 1;
    int64_t batch = 0;   // the global batch B
    std::string source;  // "auto", "table", ..., or the file
    // Where the dense bottom runs (see the contract): unset, data-parallel on every rank; else that rank.
    std::optional<int64_t> bottom_rank;
};

// Every table of one kind (see the contract).
EmbeddingSharding place_embeddings(const Model& m, ShardKind kind, const ShardingOptions& o);
// The greedy planner; `fixed` (one entry per table, or empty) pins some tables first.
EmbeddingSharding plan_embedding_sharding(const Model& m, const ShardingOptions& o,
                                          const std::vector<std::optional<TablePlacement>>& fixed = {});
// A YAML placement file (configs/README.md); tables it does not name are planned.
EmbeddingSharding load_embedding_sharding(const std::string& path, const Model& m, const ShardingOptions& o);
// "auto", a kind name, or a file.
EmbeddingSharding make_embedding_sharding(const std::string& spec, const Model& m, const ShardingOptions& o);

// Per-rank figures of a sharding, before lowering: what the planner balances and what memory it places.
struct ShardLoad {
    double cost_bytes = 0;   // the planner's cost placed on the rank
    double table_bytes = 0;  // shard weights + sparse optimizer state (data-parallel tables included)
    int64_t shards = 0;
};
std::vector<ShardLoad> sharding_loads(const EmbeddingSharding& s, const ShardingOptions& o);
// The planner's cost of a table placed table-wise (see the contract).
double table_cost_bytes(const EmbeddingTable& t, int64_t batch, bool training);

// The model with its embedding tables sharded and its dense part data-parallel (see the contract).
ParallelLowering lower_embedding_sharding(const Model& forward, const EmbeddingSharding& s,
                                          const ShardingOptions& o);
// Throws a located UserError when some rank's memory exceeds the capacity.
void check_embedding_memory(const ParallelLowering& l, const EmbeddingSharding& s, const ShardingOptions& o);

}  // namespace mlsim::wl

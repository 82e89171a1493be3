#pragma once
// Parallel lowering (issue 13): a model and a parallel plan become per-rank programs with communication
// ops, and each rank's memory. A pure function of (model, plan, options): the model does not know where it
// runs, and the lowering knows nothing of the network beyond the names of collectives (CollectiveKind,
// arch/net/i_network.h); an execution engine times the programs on device and network models.
//
// Contract:
// - Plan (check_parallel_plan): data D, tensor T, pipeline P, expert E >= 1, ZeRO stage 0..3,
//   microbatches M >= 1. D·T·P = the system's devices; E divides D (expert-parallel groups are carved out
//   of the data-parallel ranks, as Megatron-Core and DeepSpeed-MoE do) and every MoE layer's expert
//   count, and E > 1 needs an MoE layer; T divides the heads, KV heads and split widths of every op it
//   splits (Megatron-LM also requires KV heads divisible by T); P <= the model's layers; the batch is a
//   multiple of D·M; ZeRO > 0 needs D > 1 and training; sequence parallelism needs T > 1, a sequence
//   divisible by T and no MoE layer. Every violation is a cfg::UserError
//   located at the plan (plan.loc, key "<plan.key>.tensor" etc.).
// - Ranks: rank = t + T·(d + D·p) (Megatron-LM's default order: tensor-parallel ranks adjacent, so they
//   share a node's fastest links; pipeline stages outermost). Expert-parallel groups are E consecutive
//   data indices (d = e + E·r); the expert-data-parallel group holds the D/E ranks with the same e.
// - Batch: the model's batch B (dimension 0 of every model input) is split into D·M micro-batches of
//   b = B/(D·M); every op is rebuilt with make_op from its new input shapes, so counts follow.
// - Tensor parallelism (Shoeybi et al. 2019, arXiv:1909.08053): a linear R whose input comes, through
//   element-wise ops (not add), attention and nothing else, only from linears L_i used only there, is a
//   row-parallel linear (in_features / T) and the L_i are column-parallel (out_features / T, bias
//   split); the ops between are split by T (attention heads and KV heads / T). Pairs are taken greedily
//   in topological order. Forward: one all-reduce of R's output (moved past an MoE combine that R feeds,
//   as the sum commutes). Backward: one all-reduce of the gradient of the L_i's input. A token
//   embedding and the LM head over the same vocabulary are vocabulary-parallel when T divides the
//   vocabulary (rows / T; the embedding's output all-reduced; logits left split). A vocabulary T does
//   not divide is padded as Megatron-LM pads it (_vocab_size_with_padding: the next multiple of
//   --make-vocab-size-divisible-by (128) x T; GPT-2/3's 50,257 at T = 8 becomes 51,200, the size the
//   Megatron-LM README and Narayanan et al. 2021 give for all their GPT models): each rank holds V'/T
//   rows. One that T divides is split as is (Llama 3's 128,256 at T = 8: 16,032 rows; Megatron itself
//   would pad it to 129,024, a 0.6 % difference left out). The padding rows' FLOPs (the LM head's forward,
//   backward and update, a tied table's dense update, (V' - V)/V' of each) are vocab_padding_flops, their
//   state bytes StageMemory::vocab_padding_bytes; neither is model work: model_flops, and so the MFU the
//   runs report, counts the unpadded, unsplit model (as PaLM's MFU, Chowdhery et al. 2022, arXiv:2204.02311
//   Appendix B, and Megatron's model FLOPs, Korthikanti et al. 2022 Section 6, count the model's own
//   operations, not padding, duplication or recomputation). Every other op (norms, residual
//   adds, position embeddings, routers) is replicated on the T ranks: its FLOPs are counted T times (the
//   stated TP duplication, tp_duplicated_flops, which also holds row-parallel biases and the
//   vocabulary-parallel embedding's lookups, gradient and sparse update: every rank sees every token). With
//   sequence parallelism (Korthikanti et al. 2022, arXiv:2205.05198) the all-reduce becomes a reduce-scatter
//   after R and an all-gather before the L_i; replicated ops then run on s/T of the sequence (no duplication
//   inside the layers); backward mirrors them (all-gather of R's output gradient, reduce-scatter of the L_i
//   input gradient) plus the re-all-gather of the L_i input for their weight gradients.
// - Pipeline parallelism: the ops are grouped into layers (the name up to its first all-digit
//   component: "layers.3.", "h.11.", "layer1.0."; ops outside any layer join the next layer, or the
//   last when none follows); stages get consecutive layers, floor(L/P) each and one more for the first
//   L mod P stages (Megatron-LM's uniform split when P divides L). Tensors crossing a stage boundary are
//   sent forward (activations) and their gradients backward, one send/recv pair per boundary per
//   micro-batch. Schedules: GPipe (Huang et al. 2019: all forwards, then all backwards in reverse) and
//   1F1B (Narayanan et al. 2021, PipeDream-Flush: stage s runs min(P-s, M) warm-up forwards, then
//   alternates one forward and one backward, then drains); bubble fraction (P-1)/(M+P-1) for both.
//   A weight tied across stages (the LM head tied to the first stage's embedding) has its gradient
//   all-reduced over the embedding group (those stages) once per step, after the stage's whole backward
//   of the last micro-batch: Megatron-LM's finalize_model_grads (_allreduce_word_embedding_grads) runs
//   it after the pipeline schedule has returned.
// - Activation recomputation (plan.recompute; training only, and not with TrainingOptions::checkpointing,
//   the single-device sqrt(n) rule): `full` is Megatron-LM's --recompute-granularity full with
//   --recompute-method uniform --recompute-num-layers 1 (Narayanan et al. 2021 Section 3.5; Korthikanti
//   et al. 2022 Section 5): each transformer layer (ops whose name has a layer key) keeps only its input
//   and re-runs its whole forward, tensor-parallel collectives included (purpose "<forward
//   purpose>_recompute"), just before its backward; ops outside the layers (embeddings, final norm, LM
//   head) keep their tensors. Compute rises by the layers' forward FLOPs (recompute_flops); the
//   activations per micro-batch become the layers' inputs plus what the ops outside them keep, and the
//   largest layer's recomputed tensors are held once (recompute_working_bytes). `selective` recomputes
//   the attention core (Q·K^T, softmax, dropout, scores·V; Korthikanti et al. Section 4.2): the training
//   lowering's attention backward is already FlashAttention-style (it recomputes the scores and keeps no
//   s x s tensor, workloads/training.h), so selective adds nothing here: it lowers as `none`.
// - Data parallelism: weight gradients are all-reduced over the data group in buckets of 25 MiB
//   (PyTorch DDP's bucket_cap_mb = 25 default; its smaller first bucket is not modelled), filled in the
//   order backward produces the gradients, each issued when its last gradient is produced, on the last
//   micro-batch only (gradient accumulation). Expert weights sync over the expert-data group instead.
// - ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054): stage 1 reduce-scatters the buckets instead, updates
//   1/D of the optimizer state and all-gathers the updated parameters; stage 2 also reduce-scatters on
//   every micro-batch (only the gradient shard is kept); stage 3 all-gathers each layer's parameters
//   before its forward and again before its backward (FSDP-style per-layer units, Zhao et al. 2023)
//   and keeps no parameter all-gather after the optimizer. Volumes per step: 2Ψ (stages 0-2 per
//   accumulation step), 3Ψ per micro-batch for stage 3.
// - Expert parallelism: an all-to-all dispatch before a layer's local dispatch ops and an all-to-all
//   combine before its combine op (each rank's send buffer: its tokens x top_k x d elements); backward
//   mirrors both. Each rank keeps experts [r·n/E, (r+1)·n/E).
// - Comm ops carry the nccl-tests size convention of arch/net/i_network.h, a group axis resolved per rank
//   by ParallelLowering::group(), and their dependencies (the tasks producing the input and, through
//   their own deps, the tasks consuming the output). Send/recv are point-to-point (peer rank).
// - Memory (ParallelLowering::memory): per stage (all ranks of a stage hold the same), in bytes. Weights: the
//   rank's parameters (after TP, EP and pipeline splits) at the model dtype; gradients likewise; Adam
//   optimizer state as the ZeRO paper counts it for mixed precision (16-bit weights and gradients plus
//   K = 12 bytes per parameter: FP32 master weights, momentum and variance; with FP32 weights K = 8,
//   momentum and variance); ZeRO divides optimizer state (>= 1), gradients (>= 2) and weights (3) by
//   the data-parallel degree (expert weights by D/E). Activations: the tensors backward reads for one
//   micro-batch on the rank's stage (the training lowering's account, FlashAttention-style attention, no
//   dropout masks; so a GPT layer holds sbh(10 + 24/t) - style terms, not Korthikanti's 34 + 5as/h),
//   times the micro-batches in flight: 1F1B stage s keeps min(P-s, M), GPipe M. An embedding bag keeps its
//   optimizer state in its table's type (op_state_bytes_per_param, workloads/training.h). KV cache: the
//   stage's decode attention's for all B/D sequences (training a decode step too). Inference: plus the
//   largest op's input and output of one micro-batch. A stage that does not fit its device is a UserError
//   naming its first rank, what it holds and by how much it is over.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "arch/net/i_network.h"
#include "sim/config/error.h"
#include "workloads/model.h"

namespace mlsim::wl {

enum class PipelineSchedule { gpipe, one_f_one_b };
// Activation recomputation (Megatron-LM's --recompute-granularity, Korthikanti et al. 2022,
// arXiv:2205.05198): see the contract.
enum class Recompute { none, full, selective };

struct ParallelPlan {
    int64_t data = 1, tensor = 1, pipeline = 1, expert = 1;
    int64_t zero = 0;
    int64_t microbatches = 1;
    bool sequence_parallel = false;
    PipelineSchedule schedule = PipelineSchedule::one_f_one_b;
    Recompute recompute = Recompute::none;
    // Where the plan was written, for errors ("<command line>", "--tensor-parallel"; a sweep file).
    cfg::SourceLoc loc{"<command line>", 0, 0};
    std::string key = "parallel";  // errors name "<key>.tensor", ... (the plan as a whole: "<key>")
    std::map<std::string, std::string> keys;  // per field, a key that replaces "<key>.<field>" ("--zero")

    int64_t devices() const { return data * tensor * pipeline; }
};

struct ParallelOptions {
    bool training = true;
    TrainingOptions training_options;
    int64_t bucket_bytes = 25LL * 1024 * 1024;  // PyTorch DDP bucket_cap_mb = 25 (MiB)
};

// Which group of ranks a comm op runs over, seen from the rank that runs it.
enum class GroupAxis { tensor, data, expert, expert_data, pipeline_next, pipeline_prev, embedding };

struct CommOp {
    // nullopt: point-to-point (a send to, or a receive from, the one peer of `axis`).
    std::optional<arch::net::CollectiveKind> collective;
    bool send = false;  // point-to-point: send (true) or receive
    GroupAxis axis = GroupAxis::tensor;
    int64_t bytes = 0;    // nccl-tests' size (arch/net/i_network.h); point-to-point: the message
    std::string purpose;  // "tp_forward", "tp_backward", "sp_gather", "dp_bucket", "zero_gather", ...
    // all-to-all(v) only: p x p bytes in group order, counts[i * p + j] from group member i to member j
    // (arch/net/i_network.h, CollectiveRequest::counts); empty = bytes / p to every member. Embedding
    // sharding (table-wise, column-wise) sends uneven lookups and pooled embeddings this way.
    std::vector<int64_t> counts;
};

// One item of a section: a compute op or a comm op, and the earlier tasks of the same section it waits
// for. A task that reads a tensor of an earlier section (backward reading forward activations) needs no
// dep: sections of one micro-batch run in schedule order.
struct Task {
    std::optional<Op> op;  // compute
    std::optional<CommOp> comm;
    std::string name;
    std::vector<size_t> deps;
    bool last_microbatch_only = false;   // gradient sync that waits for accumulation (DDP, ZeRO-1)
    std::vector<size_t> after_backward;  // step section only: backward tasks (last micro-batch) it waits for
};

enum class Pass { forward, backward };
struct ScheduleItem {
    int64_t microbatch = 0;
    Pass pass = Pass::forward;
    bool operator==(const ScheduleItem&) const = default;
};

// What every rank of one pipeline stage runs (ranks of a stage differ only in their groups).
struct StageProgram {
    int64_t stage = 0;
    std::vector<Task> forward;   // one micro-batch's forward
    std::vector<Task> backward;  // one micro-batch's backward (training)
    std::vector<Task> step;      // once per step: gradient sync, optimizer, parameter gathers
    std::vector<ScheduleItem> schedule;
    int64_t first_layer = 0, layers = 0;  // the layers it holds
};

struct RankCoord {
    int64_t data = 0, tensor = 0, pipeline = 0;
};

struct StageMemory {
    double weights_bytes = 0, gradients_bytes = 0, optimizer_state_bytes = 0, activations_bytes = 0,
           kv_cache_bytes = 0, total_bytes = 0;
    int64_t inflight_microbatches = 1;
    double activations_per_microbatch_bytes = 0;
    int64_t params = 0;  // parameters this rank holds the weights of (before ZeRO-3 sharding)
    // Of those, the padded vocabulary rows' share (the padding spread evenly over the tensor ranks;
    // Megatron gives it all to the last one), and their weight, gradient and optimizer bytes (in the
    // totals above too).
    int64_t vocab_padding_params = 0;
    double vocab_padding_bytes = 0;
    // Recompute full: the largest layer's recomputed tensors its backward reads (one layer at a time,
    // whatever the micro-batches in flight; in total_bytes).
    double recompute_working_bytes = 0;
};

struct ParallelLowering {
    ParallelPlan plan;
    int64_t microbatch_size = 0;  // b = B / (D·M)
    std::vector<StageProgram> stages;
    // The unsplit, unpadded model's FLOPs for the whole batch (training: lowered without recomputation):
    // the model FLOPs of MFU (see the contract).
    double model_flops = 0;
    double tp_duplicated_flops = 0;  // FLOPs of replicated ops run T times, counted (T-1) times here
    // Vocabulary padding (see the contract): the vocabulary V and its padded size V' (0 when no
    // vocabulary-parallel pair), and the FLOPs all ranks spend on the V' - V padding rows. All ranks'
    // FLOPs = the unsplit model's training FLOPs + tp_duplicated_flops + vocab_padding_flops.
    int64_t vocab = 0, padded_vocab = 0;
    double vocab_padding_flops = 0;
    // FLOPs all ranks run again in backward (recompute-phase tasks, replicated ones on every tensor rank);
    // not in tp_duplicated_flops or vocab_padding_flops, so all ranks' FLOPs = training FLOPs +
    // tp_duplicated_flops + vocab_padding_flops + recompute_flops.
    double recompute_flops = 0;
    double bubble_fraction = 0;  // (P-1)/(M+P-1)
    int64_t layers = 0;
    std::vector<StageMemory> memory;  // per stage (see the contract)
    // Per-rank programs, for lowerings whose ranks of one stage run different work (embedding tables
    // sharded table- or row-wise: each rank looks up its own tables). Empty: every rank runs its stage's
    // program. When set it has one entry per rank and program(rank) returns it; rank_memory likewise.
    std::vector<StageProgram> rank_programs;
    std::vector<StageMemory> rank_memory;
    // Made by lower_embedding_sharding, whose plan.expert holds the devices per node (its node groups for
    // the hierarchical all-to-alls), not an expert-parallel degree: expert_degree() is 1 then.
    bool embedding_sharding = false;
    int64_t expert_degree() const { return embedding_sharding ? 1 : plan.expert; }

    int64_t ranks() const { return plan.devices(); }
    RankCoord coord(int64_t rank) const;
    int64_t rank_of(const RankCoord& c) const;
    const StageProgram& program(int64_t rank) const {
        if (!rank_programs.empty()) return rank_programs.at(static_cast<size_t>(rank));
        return stages.at(static_cast<size_t>(coord(rank).pipeline));
    }
    const StageMemory& memory_of(int64_t rank) const {
        if (!rank_memory.empty()) return rank_memory.at(static_cast<size_t>(rank));
        return memory.at(static_cast<size_t>(coord(rank).pipeline));
    }
    // The ranks of `axis` for `rank`, in rank order; point-to-point axes give {peer} (empty at the ends).
    std::vector<int64_t> group(int64_t rank, GroupAxis axis) const;
    // FLOPs one rank runs in one step (every micro-batch, every section).
    double rank_flops(int64_t rank) const;
};

// Checks the plan against the model and the device count (see the contract).
// `devices_note` follows the device count in the message of a plan that does not match it (the system's
// hosts, which run no rank).
void check_parallel_plan(const Model& forward, const ParallelPlan& plan, int64_t devices,
                         const ParallelOptions& opts = {}, std::string_view devices_note = {});
// Lowers a forward model (inference or training per opts.training) under a checked plan.
ParallelLowering lower_parallel(const Model& forward, const ParallelPlan& plan,
                                const ParallelOptions& opts = {});

// The schedule of one stage: GPipe or 1F1B order of (micro-batch, pass) items; forward only when not
// training.
std::vector<ScheduleItem> pipeline_schedule(PipelineSchedule kind, int64_t stage, int64_t stages,
                                            int64_t microbatches, bool training);
double bubble_fraction(int64_t stages, int64_t microbatches);

// Megatron-LM's --make-vocab-size-divisible-by default (megatron/training/arguments.py: 128; its
// _vocab_size_with_padding pads to a multiple of 128 x T so each rank's slice is a multiple of 128 rows).
inline constexpr int64_t k_vocab_multiple = 128;
// The vocabulary a tensor group of `tensor` ranks splits: `vocab` when tensor divides it, else the
// next multiple of k_vocab_multiple x tensor (50,257 at T = 8: 51,200).
int64_t padded_vocabulary(int64_t vocab, int64_t tensor);

// Throws a located UserError when a stage's memory total exceeds `capacity_bytes` (see the contract).
void check_parallel_memory(const ParallelLowering& lowering, double capacity_bytes,
                           const std::string& device_name);
// The same with each rank's own device (rank r on devices[r] of a system of several types): every rank is
// checked against its device's main memory, `capacity_bytes[r]` and `device_names[r]`.
void check_parallel_memory(const ParallelLowering& lowering, const std::vector<double>& capacity_bytes,
                           const std::vector<std::string>& device_names);
std::string to_string(GroupAxis axis);

// Bytes of the forward tensors that the non-forward ops i with include(i) read in a lowered model `rm`
// (seen through reshape / flatten views to the tensor holding the data, each tensor once): what a rank
// keeps for backward, the activations of the memory accounts.
double saved_forward_bytes(const Model& rm, const std::function<bool(size_t)>& include);

}  // namespace mlsim::wl

#pragma once
// Training lowering: lower_training(forward, opts) and training_memory(forward, opts), declared in
// workloads/model.h. This header documents the rules; it declares only the explicit-segment overload.
//
// Contract:
// - The lowered model contains the forward ops unchanged (phase forward), then backward ops (phase
//   backward), recompute ops (phase recompute, checkpointing only) and one optimizer update per
//   weight-owning op (phase optimizer, covering its weight and bias). It is a validated DAG: backward ops
//   read the gradient of their forward op's output and the activations they need (from the forward op
//   that produced them, or from its recompute copy), so device models can schedule it like any model.
// - Gradients flow only where they are needed (autograd semantics): an input gets a gradient when some
//   op upstream of it has weights; model inputs get none unless opts.input_grads (frameworks skip the
//   first layer's grad-input GEMM). A tensor read by k > 1 ops gets a grad_accumulate op (k-1 adds per
//   element). The loss is outside the model: the gradient of each model output is an input.
// - Backward rules (per forward op f; MACs and FLOPs as in workloads/op.h):
//     linear / matmul / conv (any groups): grad_input and grad_weight (or matmul_grad_a / _b), each with
//       f's MACs: backward MACs are exactly 2x forward; grad_weight adds the bias reduction (one add per
//       output element);
//     element-wise activations: (f's FLOPs per element + 1) per element (the derivative times the
//       incoming gradient); add: none (the gradient passes through); mul: 1 per element per input;
//     softmax 4 per element; layernorm / batchnorm grad_input 9 and grad_weight 3 per element, rmsnorm 6
//       and 2; pooling 1 per input element;
//     attention: one attention_grad op, FlashAttention-style (Dao et al. 2022, arXiv:2205.14135): it
//       keeps q, k, v and recomputes Q·K^T, so it runs 5 GEMMs (2.5x forward MACs) plus 11 FLOPs per score;
//     embedding: a sparse grad_weight (one add per gathered element), no input gradient;
//     RNN / LSTM / GRU: grad_input (always, BPTT needs it; outputs dX and the gate gradients) and
//       grad_weight, each with f's MACs; gate arithmetic as in the forward cell;
//     dot interaction: 2x forward MACs; concat / slice / reshape: data movement only.
// - Optimizers, FLOPs per updated element and state tensors per weight: sgd 2 and 0; momentum 4 and 1;
//   adam 12 and 2 (m and v updates 7, bias-corrected step 5). An embedding bag updated only through its
//   lookups is updated sparsely (the rows touched this step, duplicates included: an uncoalesced sparse
//   gradient), as the DLRM reference's EmbeddingBag(sparse=True) is; its optimizer state still covers the
//   whole table. A plain embedding (an LLM's token and position tables, nn.Embedding) has a dense
//   gradient of the table's size and a dense update, as PyTorch and Megatron-LM train them. Weights and
//   gradients use the op's dtype; the optimizer's part is state_bytes_per_param's: in a 16-bit (or 8-bit)
//   dtype an FP32 master copy of the weights and FP32 states, as mixed-precision training keeps them
//   (Micikevicius et al. 2018, arXiv:1710.03740; the ZeRO paper's K = 12 for Adam), so the update op reads
//   and writes those, and writes the low-precision copy.
// - Checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost",
//   arXiv:1604.06174): the forward ops, in topological order, are cut into round(sqrt(n)) segments of
//   equal op count; tensors crossing a segment boundary are kept, and in every segment but the last the
//   ops whose outputs backward needs are recomputed (phase recompute) just before that segment's
//   backward ops. Explicit segments (CheckpointSegments, the overload below): tensors crossing a segment
//   boundary are kept, and every op of a re-run segment is recomputed, whether backward reads its output or
//   not (a checkpointed function re-runs whole, as torch.utils.checkpoint and Megatron-LM's
//   CheckpointFunction do); ops of other segments keep what their backward reads.
// - training_memory: weights = stored weight bytes (Model::totals().weight_bytes); gradients = one
//   gradient per weight element (the lookups' rows for sparse embedding-bag updates); optimizer state =
//   0 / 1 / 2 tensors per weight for sgd / momentum / adam; activations = every tensor some backward op
//   reads, each counted once (views such as reshape cost nothing), or with checkpointing the boundary
//   tensors plus the largest segment's needed tensors; a decode step's KV cache (an input of its attention
//   layers, which their backward reads too) beside them. An unknown optimizer is a UserError.
#include <cstdint>
#include <string>
#include <vector>

#include "workloads/model.h"

namespace mlsim::wl {

// Explicit checkpoint segments instead of checkpointing's sqrt(n) rule (the parallel lowering's per-layer
// recomputation, workloads/parallel.h): per forward op, its segment (non-decreasing in op order) and
// whether its segment re-runs whole before its backward (see the contract; opts.checkpointing ignored).
struct CheckpointSegments {
    std::vector<int64_t> segment_of;
    std::vector<bool> rerun;
};
Model lower_training(const Model& forward, const TrainingOptions& opts, const CheckpointSegments& segments);

// Model-state bytes per parameter (weights, gradients, optimizer state) before ZeRO sharding, the ZeRO
// paper's accounting (Rajbhandari et al. 2020, arXiv:1910.02054, section 3.1): 16-bit dtypes 2 + 2 + K
// (K = 12 for Adam, 8 for momentum, 4 for SGD: the FP32 master copy and FP32 states), and so for 8-bit
// ones (1 + 1 + K); 32-bit 4 + 4 + 4·states; fp64 8 + 8 + 8·states (no master copy). Through
// op_state_bytes_per_param (below) one rule for a single device (training_memory, the update op), a
// parallel plan (parallel.h) and embedding sharding (embedding_sharding.h).
struct StateBytes {
    double weights = 0, gradients = 0, optimizer = 0;
    bool master = false;  // an FP32 master copy is part of `optimizer`
};
StateBytes state_bytes_per_param(DType dtype, const std::string& optimizer);
// An embedding bag's table (DLRM's, updated through its lookups, on one device or sharded): its states in
// the table's own type and no FP32 master copy, as FBGEMM's and the DLRM reference's sparse updates keep
// them; a table wanting FP32 rows is an FP32 table (--embedding-dtype fp32).
StateBytes table_state_bytes_per_param(DType dtype, const std::string& optimizer);
// The rule for op f's weights: table_state_bytes_per_param for an embedding bag, state_bytes_per_param
// for every other weight (a plain embedding included). Used by the single-device lowering, a parallel
// plan and the embedding-sharding lowering alike.
StateBytes op_state_bytes_per_param(const Op& f, const std::string& optimizer);

// An optimizer by name (sgd, momentum, adam; another name is a UserError at the command line's
// --optimizer): FLOPs per updated element and state tensors per weight, as the contract above says.
struct Optimizer {
    std::string name;
    double flops_per_elem;
    int state_tensors;
};
Optimizer optimizer_of(const std::string& name);

}  // namespace mlsim::wl

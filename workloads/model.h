#pragma once
// Models: DAGs of ops (edges are tensors from a producer's output slot to a consumer's input slot), and
// every way of obtaining one: the zoo, user YAML files, SCALE-Sim topology CSVs, and training lowering
// of a forward model.
//
// Contract:
// - A Model is immutable and valid: op names are unique; every edge joins existing ops and slots; each
//   input slot is fed by at most one edge, and an unfed slot is a model input; the producer's output
//   shape equals the consumer's input shape; the graph is acyclic. ModelBuilder::build() checks all of
//   this and throws cfg::UserError naming the op(s) (with file:line:col when they came from a file).
// - ops() lists the ops in topological order; among ops that are ready at the same time the one added
//   first comes first (Kahn's algorithm with an insertion-order priority), so the order is
//   deterministic and equals insertion order whenever insertion order is already topological.
// - The graph itself (a Boost.Graph adjacency_list) stays inside model.cpp: callers see ops by index and
//   edges as plain Edge values, so only model.cpp compiles Boost.Graph. Copies share the immutable graph,
//   so copying or moving a Model never copies it.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "workloads/op.h"

namespace mlsim::wl {

struct TensorRef {  // output `slot` of op `op`
    size_t op = 0;
    int slot = 0;
    bool operator==(const TensorRef&) const = default;
};

struct Edge {
    size_t from = 0;
    int from_slot = 0;
    size_t to = 0;
    int to_slot = 0;
};

struct ModelInput {  // an input slot no edge feeds
    size_t op = 0;
    int slot = 0;
};

class Model {
  public:
    const std::string& name() const { return m_name; }
    const std::vector<Op>& ops() const { return m_ops ? m_ops->list : no_ops(); }  // in topological order
    const Op& op(size_t i) const { return ops().at(i); }
    std::optional<size_t> find(std::string_view name) const;

    size_t edge_count() const;
    std::vector<Edge> edges() const;                               // by consumer, then input slot
    std::vector<Edge> in_edges(size_t i) const;                    // by input slot
    std::vector<Edge> out_edges(size_t i) const;                   // by consumer, then input slot
    std::optional<TensorRef> producer(size_t op, int slot) const;  // nullopt: a model input
    std::vector<ModelInput> inputs() const;
    std::vector<TensorRef> outputs() const;  // output slots no edge reads

    // Sums of op counts, except params and weight_bytes, which are the model's stored weights: each
    // weight tensor once (tied and recompute ops add nothing) and whole embedding tables, so
    // totals().weight_bytes is what must be resident, not what one pass streams (sum op.counts() for that).
    OpCounts totals() const;
    double kv_cache_bytes() const;  // KV cache read by the decode attention ops

  private:
    friend class ModelBuilder;
    struct Graph;  // defined in model.cpp
    const Graph& graph() const;

    // The ops and their index by name, immutable once built like the graph, so that copies of a model
    // share them: a sweep's points each copy ResNet-50 from exp::ModelCache, and a deep copy took about
    // 700 heap blocks and 0.3 M instructions a point.
    struct Ops {
        std::vector<Op> list;
        std::unordered_map<std::string, size_t> index;
    };
    static const std::vector<Op>& no_ops();

    std::string m_name;
    std::shared_ptr<const Ops> m_ops;      // null for a default-constructed (empty) model
    std::shared_ptr<const Graph> m_graph;  // null for a default-constructed (empty) model
};

// Collects ops and edges, then validates and orders them into a Model.
class ModelBuilder {
  public:
    explicit ModelBuilder(std::string name);

    // Adds an op with its input slots unconnected; returns its id (insertion index).
    size_t add(Op op);
    // Adds an op and connects input slot i to sources[i] (nullopt leaves slot i a model input).
    size_t add(Op op, const std::vector<std::optional<TensorRef>>& sources);
    void connect(TensorRef from, size_t to, int to_slot);
    // By name, resolved at build(); errors are reported at `loc` / `key_path`.
    void connect(std::string from, int from_slot, std::string to, int to_slot, cfg::SourceLoc loc = {},
                 std::string key_path = {});

    const Op& op(size_t id) const { return m_ops.at(id); }
    Op& op(size_t id) { return m_ops.at(id); }
    size_t size() const { return m_ops.size(); }
    const std::string& name() const { return m_name; }

    Model build() &&;

  private:
    struct PendingEdge {
        std::string from, to;
        int from_slot = 0, to_slot = 0;
        cfg::SourceLoc loc;
        std::string key_path;
    };
    std::string m_name;
    std::vector<Op> m_ops;
    std::vector<Edge> m_edges;
    std::vector<PendingEdge> m_named;
};

// ---- the zoo ---------------------------------------------------------------------------------------
// Built-in models with published parameter and MAC counts (tests/workloads/zoo_test.cpp checks them;
// each builder cites its source). Options that a model does not take are a UserError, as is an unknown
// name ("unknown model 'resnet5'; did you mean 'resnet50'?").
struct ZooOptions {
    int64_t batch = 1;
    int64_t seq = 0;    // prefill: prompt length; decode: tokens already in the KV cache; 0 = model default
    int64_t image = 0;  // input height = width for image models; 0 = model default
    DType dtype = DType::fp32;
    int64_t hidden = 0;  // mlp3 only: hidden width h; 0 = default
};
struct ZooEntry {
    std::string name, description;
};
std::vector<ZooEntry> zoo_list();
Model zoo_build(std::string_view name, const ZooOptions& opts);

// ---- user models -----------------------------------------------------------------------------------
// YAML model files: see workloads/yaml_model.h and configs/models/README.md for the format.
Model load_model_yaml(const std::string& path, const ZooOptions& opts);
// SCALE-Sim topology CSVs: see workloads/scalesim_csv.h.
Model load_scalesim_csv(const std::string& path, const ZooOptions& opts);

// ---- training --------------------------------------------------------------------------------------
// See workloads/training.h for the lowering rules and the memory model.
struct TrainingOptions {
    std::string optimizer = "adam";  // sgd | momentum | adam
    bool checkpointing = false;      // keep only segment boundaries (~sqrt(n) segments), recompute the rest
    bool input_grads = false;        // also compute gradients w.r.t. the model's inputs (frameworks skip it)
};
Model lower_training(const Model& forward, const TrainingOptions& opts);

struct MemoryAccount {
    double weights_bytes = 0, gradients_bytes = 0, optimizer_state_bytes = 0, activations_bytes = 0,
           kv_cache_bytes = 0,  // a decode step's KV cache (its attention reads it forward and backward)
        total_bytes = 0;        // the sum of the five
};
MemoryAccount training_memory(const Model& forward, const TrainingOptions& opts);

}  // namespace mlsim::wl

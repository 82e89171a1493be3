#pragma once
// The interface every device family implements: map each op of a model onto the device and report, per
// layer, when it ran, how long it took, what it moved and what it cost in energy.
// Contract:
// - results are deterministic functions of (device spec, model options, model);
// - no detailed model reports a layer time below the roofline bound of the same device
//   (arch/roofline/roofline.h: roofline_bound) over the bytes the layer must move across main memory:
//   all of its weights, the inputs it does not find in an on-chip buffer and the outputs it does not
//   keep there for a later layer (arch/residency.h; the `input_bytes_on_chip` and `output_bytes_kept`
//   metrics say how many). A layer with nothing on chip is held to the roofline's own bound; one with
//   inputs on chip may legitimately beat the roofline device's time for it (which re-reads every input
//   from main memory), never its compute bound;
// - energy is never negative, and bytes_read/bytes_written are what crossed the device's main-memory
//   interface;
// - layers run one after another in the model's topological order: start_s of layer i+1 is end_s of layer i;
// - time_s = parts.total() and bound = bound_of(parts): one meaning of `bound` in every family;
// - what only some families model goes into `levels` and `metrics`, never into new fields here;
// - bounded: a run never simulates past limits::max_simulated_s (a UserError at the layer that would
//   cross it, check_simulated_time), and check_work() refuses, before anything runs, a run whose
//   estimated work is above the WorkLimits the user set.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "sim/config/limits.h"
#include "sim/core/stats.h"
#include "workloads/model.h"

namespace mlsim::arch {

// Traffic at one memory level a family models (an on-chip buffer, a cache, main memory).
struct LevelTraffic {
    std::string level;  // the level's name as configured: unified_buffer, weight_fifo, l2, hbm, dram
    double bytes_read = 0, bytes_written = 0;
    int64_t accesses = 0;  // accesses (words, lines) when the family counts them, else 0
    double energy_j = 0;   // dynamic energy of this level's accesses
};

// Any other per-layer figure of a family: a number with its unit, or a text (value empty).
struct Metric {
    std::string name;  // snake_case, unit-suffixed where it helps: stall_weight_cycles, energy_pe_hops_j
    std::optional<double> value;
    std::string unit;  // "cycles", "count", "J", "B", "1" (a ratio); empty for a text
    std::string text;
};

// Where a layer's time went. The parts add up to the layer's time_s; the largest names its bound.
//   compute:       the units doing arithmetic (including array fill and drain);
//   memory:        waiting on a memory level (the `memory_level` metric names it), including the
//                  compute units waiting for an operand to shift in from an on-chip buffer; time in
//                  which transfers overlap computing belongs to whichever of the two was busier, as on
//                  the roofline (a layer paced by main memory is memory time even where it computed);
//   overhead:      launch / dispatch / fixed per-op time;
//   communication: waiting on other devices (systems).
struct TimeParts {
    double compute_s = 0, memory_s = 0, overhead_s = 0, communication_s = 0;
    double total() const { return compute_s + memory_s + overhead_s + communication_s; }
};

// "compute" | "memory" | "overhead" | "communication": the largest part (ties go to the earlier name).
std::string bound_of(const TimeParts& parts);

struct LayerResult {
    int64_t idx = 0;
    std::string name, op, phase, dtype;
    wl::OpCounts counts;
    double bytes_read = 0, bytes_written = 0;  // across the main-memory interface
    double start_s = 0, end_s = 0, time_s = 0;
    // Device clock cycles the layer occupies. Roofline: ceil(time_s · clock). Systolic: the array's
    // cycles (pipeline plus vector unit), without the fixed op_overhead that time_s adds on top.
    int64_t cycles = 0;
    // Cycles the compute units wait on memory (systolic: the sum of its stall causes; roofline: the
    // non-computing part of the layer).
    int64_t stall_cycles = 0;
    double energy_compute_j = 0, energy_memory_j = 0, energy_static_j = 0;
    // Roofline: achieved / peak throughput for the layer's data type. Systolic: MACs performed by the
    // arrays / (cycles · rows · cols · arrays).
    double utilization = 0;
    TimeParts parts;    // sums to time_s
    std::string bound;  // bound_of(parts)
    // What differs by family: traffic per memory level, and named metrics.
    std::vector<LevelTraffic> levels;
    std::vector<Metric> metrics;

    double energy_j() const { return energy_compute_j + energy_memory_j + energy_static_j; }
    // Sets parts and the bound derived from them.
    void set_parts(const TimeParts& p);
    // One line per metric in a model: add_metric("stall_weight_cycles", n, "cycles").
    void add_metric(std::string metric_name, double value, std::string unit);
    void add_text(std::string metric_name, std::string text);
    // The engine's counters (sim/core/stats.h) as metrics: "dram.busy_time" in ps becomes
    // dram_busy_time_s in seconds; other units keep their value and unit ("bytes" becomes "B").
    void add_stats(const std::vector<StatRow>& stats);
    // nullptr when absent.
    const Metric* metric(std::string_view metric_name) const;
    // The value of a numeric metric, or `fallback` when absent.
    double metric_value(std::string_view metric_name, double fallback = 0) const;
    const LevelTraffic* level(std::string_view level_name) const;
};

// How much work one run may start (the run options --max-pe-cycles, ...; sim/config/limits.h).
struct WorkLimits {
    double max_pe_cycles = limits::default_max_pe_cycles;
};

// Reports a run's progress: layers done so far, of `total`.
using LayerProgress = std::function<void(std::size_t done, std::size_t total)>;

class DeviceModel {
  public:
    virtual ~DeviceModel() = default;
    virtual std::string_view model_name() const = 0;  // e.g. "roofline", "systolic"
    virtual std::vector<LayerResult> run(const wl::Model& model) = 0;
    // Estimates the work of run(model) and refuses it (a UserError naming the estimate, the limit and
    // the option that raises it) when it is above `limits`; cheap next to the run. A family whose cost
    // does not grow with the size of the layers (closed forms) accepts every run.
    virtual void check_work(const wl::Model& model, const WorkLimits& limits) const;
    // Called after each layer that run() finishes; empty by default.
    void set_progress(LayerProgress progress) { m_progress = std::move(progress); }

  protected:
    void report_progress(std::size_t done, std::size_t total) const {
        if (m_progress) m_progress(done, total);
    }

  private:
    LayerProgress m_progress;
};

// Refuses a layer that would end `end_s` after the run's start when that is past
// limits::max_simulated_s (a UserError at the op, naming the device), so that no time or cycle count
// overflows. Models call it before converting a layer's time into cycles or engine ticks.
void check_simulated_time(const wl::Op& op, double end_s, const DeviceSpec& spec);

// The model that runs a device: the family named by DeviceSpec::model (arch/family.h).
std::unique_ptr<DeviceModel> make_device_model(const DeviceSpec& spec);

}  // namespace mlsim::arch

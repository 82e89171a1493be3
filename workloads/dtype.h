#pragma once
// Data types and training phases of workload ops.
// Contract: dtype_bits gives the storage width of one element (tf32 is stored in 32-bit words, so it
// moves like fp32 while computing at tensor-core precision; int4 packs two elements per byte, which
// is why byte counts in OpCounts are doubles). Names round-trip: parse_dtype(dtype_name(t)) == t.
#include <optional>
#include <string_view>
#include <vector>

namespace mlsim::wl {

enum class DType { fp32, tf32, bf16, fp16, fp8, int8, int4 };

int dtype_bits(DType t);
double dtype_bytes(DType t);  // dtype_bits / 8, 0.5 for int4
std::string_view dtype_name(DType t);
std::optional<DType> parse_dtype(std::string_view name);
std::vector<std::string_view> dtype_names();  // all names, for suggestions and help text

// forward: inference or the forward pass of training; backward: gradients; optimizer: weight updates;
// recompute: forward ops re-run during backward under activation checkpointing.
enum class Phase { forward, backward, optimizer, recompute };

std::string_view phase_name(Phase p);

}  // namespace mlsim::wl

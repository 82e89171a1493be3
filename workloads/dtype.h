#pragma once
// Data types and training phases of workload ops.
// Contract: dtype_bits gives the storage width of one element (tf32 is stored in 32-bit words, so it
// moves like fp32 while computing at tensor-core precision; int4 packs two elements per byte, which
// is why byte counts in OpCounts are doubles). Names round-trip: parse_dtype(dtype_name(t)) == t.
// This is the one list of data types: device peaks, --dtype, sweep files and help texts take theirs
// from dtype_names(), so a new type is added here and nowhere else.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mlsim::wl {

enum class DType { fp64, fp32, tf32, bf16, fp16, fp8, int16, int8, int4 };

int dtype_bits(DType t);
double dtype_bytes(DType t);   // dtype_bits / 8, 0.5 for int4
bool dtype_is_float(DType t);  // fp64 fp32 tf32 bf16 fp16 fp8
std::string_view dtype_name(DType t);
std::optional<DType> parse_dtype(std::string_view name);
// All names, widest floating-point types first: fp64 fp32 tf32 bf16 fp16 fp8 int16 int8 int4.
const std::vector<std::string>& dtype_names();

// forward: inference or the forward pass of training; backward: gradients; optimizer: weight updates;
// recompute: forward ops re-run during backward under activation checkpointing.
enum class Phase { forward, backward, optimizer, recompute };

std::string_view phase_name(Phase p);

}  // namespace mlsim::wl

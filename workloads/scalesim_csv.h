#pragma once
// SCALE-Sim topology files (A. Samajdar et al., "A Systematic Methodology for Characterizing Scalability
// of DNN Accelerators using SCALE-Sim", ISPASS 2020) read as models, so the same layers can be run on
// every device family and compared with SCALE-Sim's own results.
//
// Contract (load_scalesim_csv, declared in workloads/model.h):
// - Two formats, told apart by the header row:
//     conv: "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,
//            Strides," - one conv2d per row;
//     GEMM: "Layer, M, N, K," - one linear per row: M output rows, N output columns, K the reduction
//            (input [M, K], weight K x N), so its gemm() is {1, M, N, K}.
//   Fields are trimmed; the trailing comma SCALE-Sim writes on each row is optional; blank lines are
//   skipped.
// - SCALE-Sim's rules: no padding, output = floor((H - Fh) / stride) + 1 (SCALE-Sim computes
//   ofmap = (ifmap - filter + stride) / stride in integers, the same value), the one stride applies to
//   both axes, batch = ZooOptions::batch (1 by default, as SCALE-Sim), a layer whose name contains "DP"
//   is depthwise (groups = Channels; Num Filter 1 or Channels means one filter per channel, a multiple of
//   Channels a depth multiplier). Layers are independent: each reads a model input, as in SCALE-Sim,
//   where consecutive rows need not chain (pooling layers are not listed).
// - A missing or unreadable file, an unknown header, a row with the wrong number of fields, a field that
//   is not a positive integer, or a filter larger than its input is a UserError at file:line:col.
#include "workloads/model.h"

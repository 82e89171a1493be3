#pragma once
// SCALE-Sim topology files (A. Samajdar et al., "A Systematic Methodology for Characterizing Scalability
// of DNN Accelerators using SCALE-Sim", ISPASS 2020) read as models, so the same layers can be run on
// every device family and compared with SCALE-Sim's own results.
//
// Contract (load_scalesim_csv, declared in workloads/model.h):
// - Two formats, told apart by the header row:
//     conv: "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,
//            Strides," - one conv2d per row; the stride applies to both axes unless a ninth field gives
//            the width's stride (SCALE-Sim v2 reads a row's eighth and ninth numbers as stride height and
//            width);
//     GEMM: "Layer, M, N, K," - one linear per row: M output rows, N output columns, K the reduction
//            (input [M, K], weight K x N), so its gemm() is {1, M, N, K} (SCALE-Sim v2 runs such a row
//            as an M x K ifmap under N filters of 1 x K: the same GEMM).
//   Fields are trimmed; the trailing comma SCALE-Sim writes on each row is optional (SCALE-Sim itself
//   needs it); blank lines are skipped.
// - The layers are the real convolutions: no padding, output = floor((H - Fh) / stride) + 1, the size a
//   convolution has. SCALE-Sim's own cycle count sizes the output as ceil((H - Fh + stride) / stride),
//   one more whenever the stride does not divide H - Fh; that is a rule of its count, which the
//   systolic model's scalesim convention applies (arch/systolic/scalesim_convention.h), not of the layer.
// - batch = ZooOptions::batch (1 by default, as SCALE-Sim). A layer whose name contains "DP" (case
//   sensitive, as in SCALE-Sim) is depthwise: SCALE-Sim runs it as one layer per channel, each of one
//   input channel under Num Filter filters, so Num Filter is the depth multiplier: groups = Channels,
//   Channels x Num Filter output channels.
// - Layers are independent: each reads a model input, as in SCALE-Sim, where consecutive rows need not
//   chain (pooling layers are not listed).
// - A missing or unreadable file, an unknown header, a row with the wrong number of fields, a field that
//   is not a positive integer, or a filter larger than its input is a UserError at file:line:col.
#include "workloads/model.h"

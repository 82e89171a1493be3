#pragma once
// User models in YAML: load_model_yaml(path, opts), declared in workloads/model.h.
// configs/models/README.md is the user-facing description; configs/models/*.yaml are examples.
//
// Format (top-level keys: name, seq, inputs, ops, edges):
//   name: small-cnn                 # optional; default: the file name without extension
//   seq: 128                        # optional default for the symbol S (the command line's seq wins)
//   inputs:                         # model inputs: name -> shape
//     image: [N, 3, 32, 32]         # N = batch (command line, default 1), S = sequence length
//   ops:                            # a list; each op is a map
//     - name: conv1                 # unique
//       kind: conv2d                # see the kinds below
//       inputs: [image]             # sources, one per input slot: a model input, an op, or "op:k" for
//                                   # output k of a multi-output op
//       out_channels: 16            # the kind's attributes, as flat keys
//       kernel: 3
//       padding: 1
//     - name: fc
//       kind: linear
//       input_shape: [N, 256]       # instead of (never with) inputs: declare the shape(s) (input_shapes);
//       out_features: 10            # such slots are model inputs unless an edge feeds them
//   edges:                          # optional explicit edges, for ops that declare their input shapes
//     - {from: conv1, to: fc, slot: 0, from_slot: 0}
// Every op may also set `dtype` (default: the command line's) and `tied_to` (an op whose weights it
// shares). Integer attributes accept N and S as well as numbers. A batch above 1 for a model that never
// reads N is a UserError (its work would stay one sample's while per-sample figures divide by the batch),
// and so is a sequence length (ZooOptions::seq) for a model that never reads S.
//
// Kinds and attributes ("=" gives the default, "?" means derived from the input when absent):
//   linear: out_features, in_features?, bias=true          matmul: transpose_b=false
//   conv1d, conv2d, conv3d: out_channels, kernel, stride=1, padding=0 (or pad_begin/pad_end lists),
//     dilation=1, groups=1, bias=false, in_channels?       (kernel etc.: a number or one per axis)
//   depthwise_conv2d: as conv2d; groups = in_channels, out_channels = in_channels unless given
//   maxpool1d/2d/3d, avgpool1d/2d/3d: kernel, stride=kernel, padding=0    global_avgpool, global_maxpool
//   relu, relu6, sigmoid, tanh, silu, gelu, rope; add (2+ inputs), mul (2 inputs)
//   batchnorm, layernorm, rmsnorm: features?                softmax (last axis)
//   attention_prefill: heads, kv_heads=heads, head_dim?, causal=true, skip_masked=false
//   attention_decode: heads, kv_heads=heads, head_dim?, cache_len; inputs q, k, v of the new token(s)
//   embedding: rows, dim                 embedding_bag: rows, dim, mode=sum|mean (input [B, pooling])
//   rnn, lstm, gru: hidden_size, input_size?, bias=true    (input [B, T, I])
//   concat: axis=-1     reshape: shape (0 copies, -1 infers)     flatten     slice: axis=1, start=0, length=1
//   dot_interaction: self_interaction=false
//
// Contract: every problem is a cfg::UserError at file:line:col with the key path: unknown top-level
// keys, op kinds and attributes (with the nearest valid name), missing required attributes, references
// to ops or inputs that do not exist (with the nearest name), cycles (naming the ops on the cycle),
// shape mismatches between a producer and a declared input shape, and attribute/shape inconsistencies
// found by make_op.
#include "workloads/model.h"

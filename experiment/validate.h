#pragma once
// Checking inputs without simulating (`mlsim validate`).
// Contract: check_input() recognises what `arg` is (a SCALE-Sim topology .csv or .cfg, a sweep file, a
// compare file (`workloads:`), a model YAML, a system or device config, or a device or system preset name as
// --system takes it), loads and checks it as mlsim run or mlsim sweep would, and returns a short description
// of what it found ("model 'mlp3', 5 ops"); a problem is a located cfg::UserError. Nothing is simulated and
// nothing is written.
#include <string>

namespace mlsim::exp {

std::string check_input(const std::string& arg);

}  // namespace mlsim::exp

#include "workloads/model.h"
#include "sim/core/check.h"
namespace mlsim::wl {
Model load_model_yaml(const std::string&, const ZooOptions&) { MLSIM_CHECK(false, "todo"); return {}; }
Model lower_training(const Model&, const TrainingOptions&) { MLSIM_CHECK(false, "todo"); return {}; }
MemoryAccount training_memory(const Model&, const TrainingOptions&) { MLSIM_CHECK(false, "todo"); return {}; }
}

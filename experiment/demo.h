#pragma once
// The demo's study: the same workloads on an edge GPU, datacenter accelerators and microcontrollers.
// Contract: demo_points() is a fixed list (the demo's table keeps its order). run_demo_point() runs one
// point and records it in `db`: an ok run with its layers, or, when the point fails with a user error
// (the model does not fit, the device lacks the data type), a failed run whose config text is what was
// asked, so each failed point keeps its own hash. Internal errors and database errors propagate.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "db/results_db.h"
#include "experiment/experiment.h"

namespace mlsim::exp {

struct DemoPoint {
    std::string model;
    std::string device;  // a device preset name
    int64_t batch = 1;
    int64_t seq = 0;
    std::string dtype;
};

const std::vector<DemoPoint>& demo_points();

ExperimentOptions demo_options(const DemoPoint& p);

struct DemoOutcome {
    std::optional<ExperimentResult> result;  // set when the point ran
    std::string error;                       // the user error's message otherwise
};
DemoOutcome run_demo_point(const DemoPoint& p, db::ResultsDb& db);

}  // namespace mlsim::exp

#pragma once
// The terminal table of `mlsim compare`: one line per (workload, system) pair, figures fixed-point with
// human prefixes (cli/table_format.h), a failed pair's reason on a line of its own under it.
#include <string>
#include <vector>

#include "experiment/compare.h"

namespace mlsim::cli {

std::string compare_table(const std::vector<exp::CompareRow>& rows);
// What the columns mean, one line each.
std::string compare_legend();

}  // namespace mlsim::cli

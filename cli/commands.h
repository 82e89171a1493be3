#pragma once
// The mlsim subcommands. Each returns the process exit status: 0 ok, 2 user error, 1 internal error.
// They throw cfg::UserError for user errors; main() turns exceptions into messages and statuses.
#include <string>
#include <vector>

namespace mlsim::cli {

using Args = std::vector<std::string>;  // arguments after the subcommand name

int cmd_run(const Args& args);
int cmd_sweep(const Args& args);
int cmd_validate(const Args& args);
int cmd_list(const Args& args);
int cmd_demo(const Args& args);        // cli/compare.cpp: the built-in comparison
int cmd_compare(const Args& args);     // cli/compare.cpp
int cmd_collective(const Args& args);  // cli/collective.cpp (issue 12)
int cmd_serve(const Args& args);       // cli/serve.cpp (LLM serving)

}  // namespace mlsim::cli

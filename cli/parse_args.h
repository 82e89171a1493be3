#pragma once
// Command-line parsing shared by every subcommand.
// Contract: options are matched exactly: boost's guessing of abbreviations is off, so `--dtyp` is an
// unknown option (with the nearest real one suggested), never silently taken for `--dtype`. With no
// positional arguments declared, a stray word is an error. parse() returns nullopt when --help was
// given (before required options are enforced), so the caller prints its help.
#include <boost/program_options.hpp>
#include <optional>

#include "cli/commands.h"

namespace mlsim::cli {

std::optional<boost::program_options::variables_map> parse(
    const Args& args, const boost::program_options::options_description& desc,
    const boost::program_options::positional_options_description* pos = nullptr);

}  // namespace mlsim::cli

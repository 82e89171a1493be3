#include "cli/parse_args.h"

#include <fmt/format.h>

#include <string>
#include <vector>

#include "sim/config/schema.h"

namespace mlsim::cli {

namespace po = boost::program_options;

std::optional<po::variables_map> parse(const Args& args, const po::options_description& desc,
                                       const po::positional_options_description* pos) {
    static const po::positional_options_description none;
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::variables_map vm;
    try {
        po::store(
            po::command_line_parser(args).options(desc).positional(pos ? *pos : none).style(style).run(), vm);
    } catch (const po::unknown_option& e) {
        std::string name = e.get_option_name();
        while (!name.empty() && name.front() == '-') name.erase(0, 1);
        std::vector<std::string> names;
        for (const auto& o : desc.options())
            if (!o->long_name().empty()) names.push_back(o->long_name());
        // An abbreviation names the options it is a prefix of; a typo, the nearest one.
        std::vector<std::string> guesses;
        for (const std::string& n : names)
            if (!name.empty() && n.rfind(name, 0) == 0) guesses.push_back("'--" + n + "'");
        if (guesses.empty()) {
            const std::string near = cfg::nearest(name, names);
            if (near.empty()) throw;
            guesses.push_back("'--" + near + "'");
        }
        throw po::error(fmt::format("{}; did you mean {}?", e.what(), fmt::join(guesses, " or ")));
    }
    if (vm.count("help")) return std::nullopt;
    po::notify(vm);
    return vm;
}

}  // namespace mlsim::cli

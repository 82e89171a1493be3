#pragma once
// Small helpers for declaring a family section's parameters (arch/<family>/*_family.cpp), so that every
// family writes "an optional count" or "an optional size" the same way.
#include <string>

#include "sim/config/schema.h"

namespace mlsim::arch {

// An optional parameter with no default: absent from the resolved tree unless the file gives it.
cfg::Param optional_no_default(std::string name, cfg::PType type, std::string doc);
// An optional integer >= 1 with no default.
cfg::Param count_param(std::string name, std::string doc);
// An optional size (bytes) > 0 with no default.
cfg::Param size_param(std::string name, std::string doc);
// An optional map validated against `sub`, with no default.
cfg::Param map_param(std::string name, const cfg::Schema& sub, std::string doc);
// An optional choice with a default.
cfg::Param choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                        std::string doc);

// Bytes in decimal units with three significant digits ("25.8 MB"), as the run summaries print them.
std::string bytes_si(double bytes);

}  // namespace mlsim::arch

#include "sim/version.h"

#include <mlsim/version.h>

namespace mlsim {
const char* version() { return MLSIM_VERSION_STRING; }
}  // namespace mlsim

#pragma once
// The mlsim version, written into every results row.
namespace mlsim {
const char* version();
}

#pragma once
// Shared by the libFuzzer targets in fuzz/: how one input is run and what counts as a finding.
// Contract: run_input() returns normally when the loader accepts the input or rejects it with a
// cfg::UserError (a located message is the right answer to bad input); anything else escapes: an
// InternalError, std::bad_alloc or any other exception ends in std::terminate, which libFuzzer reports as
// a crash with the input saved. Sanitizer reports, timeouts and memory blow-ups are caught by libFuzzer
// itself. The loaders take paths, so ScratchFile gives each process one private file to write inputs to.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "sim/config/error.h"

namespace mlsim::fuzz {

template <class F>
void run_input(F&& load) {
    try {
        load();
    } catch (const cfg::UserError&) {  // NOLINT: the expected outcome for a bad input
    }
}

inline std::string_view as_text(const uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// One file in a private directory under $TMPDIR (or /tmp), named `name` so that loaders which look at the
// extension (.yaml, .csv, .cfg) see the right one; removed at normal exit.
class ScratchFile {
  public:
    explicit ScratchFile(const std::string& name) {
        const char* tmp = std::getenv("TMPDIR");
        std::string dir_template = std::string(tmp && *tmp ? tmp : "/tmp") + "/mlsim-fuzz-XXXXXX";
        if (mkdtemp(dir_template.data()) == nullptr) std::abort();
        m_dir = dir_template;
        m_path = m_dir + "/" + name;
    }
    ~ScratchFile() {
        std::error_code ec;
        std::filesystem::remove_all(m_dir, ec);
    }
    ScratchFile(const ScratchFile&) = delete;
    ScratchFile& operator=(const ScratchFile&) = delete;

    // Replaces the file's contents with the input; returns its path.
    const std::string& write(const uint8_t* data, std::size_t size) {
        std::FILE* f = std::fopen(m_path.c_str(), "wb");
        if (f == nullptr) std::abort();
        if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
        if (std::fclose(f) != 0) std::abort();
        return m_path;
    }
    const std::string& dir() const { return m_dir; }

  private:
    std::string m_dir, m_path;
};

}  // namespace mlsim::fuzz

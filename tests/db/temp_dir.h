#pragma once
// A fresh directory under the system temp folder for one test, removed with everything in it.
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

namespace mlsim::test {

class TempDir {
  public:
    explicit TempDir(const char* tag) {
        std::random_device rd;
        m_path = std::filesystem::temp_directory_path() /
                 fmt::format("mlsim-test-{}-{}-{:08x}", tag, getpid(), rd());
        std::filesystem::create_directories(m_path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (m_path / name).string(); }

  private:
    std::filesystem::path m_path;
};

}  // namespace mlsim::test

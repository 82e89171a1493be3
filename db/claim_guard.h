#pragma once
// Gives a claimed sweep point back (ResultsDb::release_claim) unless the point's run released it: a point
// abandoned by an exception must not keep another process waiting until this one exits. Used by the
// threaded sweep (experiment/sweep.cpp) and the MPI sweep (mpi/sweep_mpi.cpp).
#include <string>
#include <utility>

#include "db/results_db.h"

namespace mlsim::db {

class ClaimGuard {
  public:
    ClaimGuard(ResultsDb& db, std::string key) : m_db(db), m_key(std::move(key)) {}
    ~ClaimGuard() {
        if (m_key.empty()) return;
        try {
            m_db.release_claim(m_key);
        } catch (...) {  // NOLINT: the exception that got us here is the one to report
        }
    }
    ClaimGuard(const ClaimGuard&) = delete;
    ClaimGuard& operator=(const ClaimGuard&) = delete;
    void released() { m_key.clear(); }

  private:
    ResultsDb& m_db;
    std::string m_key;
};

}  // namespace mlsim::db

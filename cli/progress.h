#pragma once
// Progress of a long run of items (a sweep's points, the points being checked, a run's layers), for a
// person watching.
// Contract: nothing is printed during the first `delay` (1 s by default): only what takes longer than
// that shows progress. After it, on a terminal (tty) update() redraws one line in place with \r, at most
// every 100 ms: a bar, items done/total, the rate in <unit>/s and the ETA; the final update ends the
// line (when a bar was drawn). Otherwise update() prints a plain line at most every 2 s or every 10 % of
// the items, and nothing for the last item (the caller prints a summary). With a null stream it prints
// nothing. It only prints: the work reports to it (experiment/sweep.h, SweepRunOptions::progress;
// arch::DeviceModel::set_progress). Not thread-safe: one thread calls update().
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace mlsim::cli {

class Progress {
  public:
    // `what` starts a plain line ("sweep", "checking"); `unit` names the items ("points", "layers").
    Progress(std::FILE* out, bool tty, std::size_t total, std::string what = "sweep",
             std::string unit = "points", std::chrono::milliseconds delay = std::chrono::seconds(1));
    void update(std::size_t done, std::size_t failed, bool final);
    // The run stopped before its final update: ends a bar drawn on a terminal, so what follows starts
    // on a line of its own.
    void interrupt();

  private:
    using Clock = std::chrono::steady_clock;
    std::FILE* m_out;
    bool m_tty;
    std::size_t m_total;
    std::string m_what, m_unit;
    std::chrono::milliseconds m_delay;
    Clock::time_point m_start, m_last_line, m_last_draw;
    std::size_t m_last_width = 0;
    int m_last_decile = 0;
    std::size_t m_last_done = 0;
};

}  // namespace mlsim::cli

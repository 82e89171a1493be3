#pragma once
// Progress of a long run of points (a sweep), for a person watching.
// Contract: on a terminal (tty) each update() redraws one line in place with \r: a bar, points
// done/total, the rate in points/s and the ETA; the final update ends the line. Otherwise update()
// prints a plain line at most every 2 s or every 10 % of the points, and nothing for the last point
// (the caller prints a summary). With a null stream it prints nothing. It only prints: the run reports
// to it (experiment/sweep.h, SweepRunOptions::progress). Not thread-safe: one thread
// (the one that waits for the workers) calls update().
#include <chrono>
#include <cstddef>
#include <cstdio>

namespace mlsim::cli {

class Progress {
  public:
    Progress(std::FILE* out, bool tty, std::size_t total);
    void update(std::size_t done, std::size_t failed, bool final);
    // The run stopped before its final update: ends a bar drawn on a terminal, so what follows starts
    // on a line of its own.
    void interrupt();

  private:
    using Clock = std::chrono::steady_clock;
    std::FILE* m_out;
    bool m_tty;
    std::size_t m_total;
    Clock::time_point m_start, m_last_line;
    std::size_t m_last_width = 0;
    int m_last_decile = 0;
    std::size_t m_last_done = 0;
};

}  // namespace mlsim::cli

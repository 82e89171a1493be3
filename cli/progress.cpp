#include "cli/progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace mlsim::cli {

namespace {

std::string clock_text(double s) {
    if (!std::isfinite(s) || s < 0) return "--:--";
    const auto total = static_cast<long long>(s + 0.5);
    if (total >= 3600) return fmt::format("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60);
    return fmt::format("{}:{:02}", total / 60, total % 60);
}

}  // namespace

Progress::Progress(std::FILE* out, bool tty, std::size_t total, std::string what, std::string unit,
                   std::chrono::milliseconds delay)
    : m_out(out),
      m_tty(tty),
      m_total(total),
      m_what(std::move(what)),
      m_unit(std::move(unit)),
      m_delay(delay),
      m_start(Clock::now()),
      m_last_line(m_start),
      m_last_draw(m_start) {}

void Progress::update(std::size_t done, std::size_t failed, bool final) {
    if (!m_out) return;
    const auto now = Clock::now();
    // Quick work shows nothing; a bar already drawn is still finished by the final update.
    if (now - m_start < m_delay && m_last_width == 0) return;
    if (final && m_tty && m_last_width == 0) return;
    if (m_tty && !final && now - m_last_draw < std::chrono::milliseconds(100)) return;
    m_last_draw = now;
    const double elapsed = std::chrono::duration<double>(now - m_start).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    const double eta = rate > 0 ? static_cast<double>(m_total - done) / rate : -1;
    const double fraction = m_total ? static_cast<double>(done) / static_cast<double>(m_total) : 1;
    const std::string failed_text = failed ? fmt::format(", {} failed", failed) : "";
    if (m_tty) {
        constexpr int width = 30;
        const int filled = static_cast<int>(fraction * width);
        std::string bar(static_cast<std::size_t>(filled), '=');
        if (filled < width) bar += '>';
        bar.resize(width, ' ');
        const std::string line =
            fmt::format("\r[{}] {}/{} {:3.0f}%  {:.1f} {}/s  ETA {}{}", bar, done, m_total, fraction * 100,
                        rate, m_unit, clock_text(final ? 0 : eta), failed_text);
        // Pad over the remains of a longer previous line.
        std::fputs(fmt::format("{:<{}}", line, std::max(line.size(), m_last_width)).c_str(), m_out);
        m_last_width = line.size();
        if (final) std::fputs("\n", m_out);
        std::fflush(m_out);
        return;
    }
    const auto decile = static_cast<int>(fraction * 10);
    const bool due = now - m_last_line >= std::chrono::seconds(2) || decile > m_last_decile;
    if (final || !due || done == m_last_done || done == m_total) return;  // the summary follows
    m_last_line = now;
    m_last_decile = decile;
    m_last_done = done;
    fmt::print(m_out, "{}: {}/{} {} ({:.0f}%), {:.1f} {}/s, ETA {}{}\n", m_what, done, m_total, m_unit,
               fraction * 100, rate, m_unit, clock_text(eta), failed_text);
    std::fflush(m_out);
}

void Progress::interrupt() {
    if (m_out && m_tty && m_last_width > 0) {
        std::fputs("\n", m_out);
        std::fflush(m_out);
        m_last_width = 0;
    }
}

}  // namespace mlsim::cli

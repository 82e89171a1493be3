#include "arch/systolic/dataflow.h"

#include <ostream>

#include "arch/systolic/fold_model_inline.h"
#include "sim/core/check.h"

namespace mlsim::arch::systolic {

std::string_view to_string(Dataflow df) {
    switch (df) {
        case Dataflow::os:
            return "os";
        case Dataflow::ws:
            return "ws";
        case Dataflow::is:
            return "is";
    }
    MLSIM_CHECK(false, "unknown dataflow");
    return {};
}

std::optional<Dataflow> parse_dataflow(std::string_view name) {
    if (name == "os") return Dataflow::os;
    if (name == "ws") return Dataflow::ws;
    if (name == "is") return Dataflow::is;
    return std::nullopt;
}

FoldGeometry fold_geometry(Dataflow df, ArrayShape array, GemmShape gemm) {
    return detail::fold_geometry(df, array, gemm);
}

FoldCoord fold_coord(const FoldGeometry& g, int64_t index) {
    MLSIM_CHECK(index >= 0 && index < g.folds(), "fold index out of range");
    FoldCoord c;
    c.index = index;
    c.row_fold = index % g.row_folds;
    c.col_fold = index / g.row_folds;
    c.row0 = c.row_fold * g.array_rows;
    c.col0 = c.col_fold * g.array_cols;
    c.rows = c.row_fold == g.row_folds - 1 ? g.rows_last : g.array_rows;
    c.cols = c.col_fold == g.col_folds - 1 ? g.cols_last : g.array_cols;
    return c;
}

AccessCounts& AccessCounts::operator+=(const AccessCounts& o) {
    macs += o.macs;
    a_reads += o.a_reads;
    b_reads += o.b_reads;
    out_writes += o.out_writes;
    out_reads += o.out_reads;
    a_hops += o.a_hops;
    b_hops += o.b_hops;
    out_hops += o.out_hops;
    return *this;
}

std::ostream& operator<<(std::ostream& os, const AccessCounts& c) {
    return os << "{macs " << c.macs << ", a_reads " << c.a_reads << ", b_reads " << c.b_reads
              << ", out_writes " << c.out_writes << ", out_reads " << c.out_reads << ", a_hops " << c.a_hops
              << ", b_hops " << c.b_hops << ", out_hops " << c.out_hops << "}";
}

std::ostream& operator<<(std::ostream& os, const FoldTiming& t) {
    return os << "{preload_start " << t.preload_start.count() << ", stream_start " << t.stream_start.count()
              << ", compute_end " << t.compute_end.count() << ", done " << t.done.count() << ", cycles "
              << t.cycles.count() << "}";
}

std::ostream& operator<<(std::ostream& os, const FoldCoord& c) {
    return os << "{fold " << c.index << " (row fold " << c.row_fold << ", col fold " << c.col_fold
              << "), at (" << c.row0 << ", " << c.col0 << "), " << c.rows << "x" << c.cols << "}";
}

std::ostream& operator<<(std::ostream& os, const FoldStats& s) {
    return os << s.coord << " " << s.timing << " " << s.counts;
}

std::ostream& operator<<(std::ostream& os, const GemmStats& s) {
    return os << "{cycles " << s.cycles.count() << ", folds " << s.folds << ", " << s.counts << "}";
}

}  // namespace mlsim::arch::systolic

#include "workloads/scalesim_csv.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

#include "sim/config/loader.h"

namespace mlsim::wl {

namespace {

struct Field {
    std::string text;
    int col = 1;  // 1-based column of the field's first non-blank character
};

std::vector<Field> split_row(const std::string& line) {
    std::vector<Field> out;
    size_t start = 0;
    while (true) {
        const size_t end = line.find(',', start);
        const std::string raw =
            line.substr(start, end == std::string::npos ? std::string::npos : end - start);
        size_t b = 0;
        while (b < raw.size() && std::isspace(static_cast<unsigned char>(raw[b]))) ++b;
        size_t e = raw.size();
        while (e > b && std::isspace(static_cast<unsigned char>(raw[e - 1]))) --e;
        out.push_back(Field{raw.substr(b, e - b), static_cast<int>(start + b + 1)});
        if (end == std::string::npos) break;
        start = end + 1;
    }
    // SCALE-Sim ends each row with a comma: drop the one empty field it leaves.
    if (out.size() > 1 && out.back().text.empty()) out.pop_back();
    return out;
}

std::string squash(std::string_view s) {
    std::string out;
    for (char c : s)
        if (!std::isspace(static_cast<unsigned char>(c)))
            out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool is_blank(const std::string& line) {
    return std::all_of(line.begin(), line.end(),
                       [](char c) { return std::isspace(static_cast<unsigned char>(c)) || c == ','; });
}

}  // namespace

Model load_scalesim_csv(const std::string& path, const ZooOptions& opts) {
    std::istringstream in(cfg::read_text_file(path, cfg::SourceLoc{path, 0, 0}, ""));
    if (opts.batch < 1)
        cfg::fail(cfg::SourceLoc{path, 0, 0}, "",
                  fmt::format("batch must be at least 1, got {}", opts.batch));

    static const std::vector<std::string> conv_cols = {"Layer name",    "IFMAP Height", "IFMAP Width",
                                                       "Filter Height", "Filter Width", "Channels",
                                                       "Num Filter",    "Strides"};
    static const std::vector<std::string> gemm_cols = {"Layer", "M", "N", "K"};

    std::string line;
    int lineno = 0;
    std::vector<Field> header;
    while (std::getline(in, line)) {
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!is_blank(line)) {
            header = split_row(line);
            break;
        }
    }
    if (header.empty()) cfg::fail(cfg::SourceLoc{path, 0, 0}, "", "empty SCALE-Sim topology file");
    const int header_line = lineno;
    bool conv = false;
    if (header.size() == conv_cols.size() && squash(header[1].text) == "ifmapheight") {
        conv = true;
    } else if (header.size() == gemm_cols.size() && squash(header[1].text) == "m") {
        conv = false;
    } else {
        cfg::fail(cfg::SourceLoc{path, header_line, 1}, "",
                  "not a SCALE-Sim topology header: expected 'Layer name, IFMAP Height, IFMAP Width, Filter "
                  "Height, Filter Width, Channels, Num Filter, Strides,' (conv) or 'Layer, M, N, K,' (GEMM)");
    }
    const std::vector<std::string>& cols = conv ? conv_cols : gemm_cols;

    std::string model_name = path;
    if (const size_t slash = model_name.find_last_of('/'); slash != std::string::npos)
        model_name.erase(0, slash + 1);
    if (const size_t dot = model_name.rfind('.'); dot != std::string::npos) model_name.erase(dot);
    ModelBuilder b(model_name);

    while (std::getline(in, line)) {
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (is_blank(line)) continue;
        const std::vector<Field> f = split_row(line);
        const cfg::SourceLoc row_loc{path, lineno, 1};
        // A conv row may add the width's stride after Strides.
        if (f.size() != cols.size() && !(conv && f.size() == cols.size() + 1))
            cfg::fail(row_loc, "",
                      fmt::format("expected {} fields ({}{}), got {}", cols.size(), fmt::join(cols, ", "),
                                  conv ? ", and optionally the width's stride" : "", f.size()));
        const std::string& name = f[0].text;
        if (name.empty()) cfg::fail(row_loc, "", "the layer has no name");
        std::vector<int64_t> v;
        for (size_t i = 1; i < f.size(); ++i) {
            int64_t x = 0;
            const std::string& t = f[i].text;
            auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
            if (ec != std::errc{} || p != t.data() + t.size() || x <= 0)
                cfg::fail(cfg::SourceLoc{path, lineno, f[i].col}, "",
                          fmt::format("layer '{}': {} must be a positive integer, got '{}'", name,
                                      i < cols.size() ? cols[i] : std::string("the width's stride"), t));
            v.push_back(x);
        }
        Op op;
        if (conv) {
            const int64_t h = v[0], w = v[1], fh = v[2], fw = v[3], c = v[4], nf = v[5], sh = v[6];
            const int64_t sw = v.size() > 7 ? v[7] : sh;
            if (fh > h || fw > w)
                cfg::fail(cfg::SourceLoc{path, lineno, f[3].col}, "",
                          fmt::format("layer '{}': filter {}x{} is larger than the {}x{} input", name, fh, fw,
                                      h, w));
            ConvAttr a;
            a.out_channels = nf;
            a.kernel = {fh, fw, 1};
            a.stride = {sh, sw, 1};
            if (name.find("DP") != std::string::npos) {
                a.groups = c;
                a.out_channels = c * nf;
            }
            op = make_op(name, a, {Shape{opts.batch, c, h, w}}, opts.dtype, row_loc);
        } else {
            const int64_t m = v[0], n = v[1], k = v[2];
            const Shape input = opts.batch == 1 ? Shape{m, k} : Shape{opts.batch, m, k};
            op = make_op(name, LinearAttr{k, n, false}, {input}, opts.dtype, row_loc);
        }
        b.add(std::move(op));
    }
    if (b.size() == 0) cfg::fail(cfg::SourceLoc{path, header_line, 1}, "", "the topology lists no layers");
    return std::move(b).build();
}

}  // namespace mlsim::wl

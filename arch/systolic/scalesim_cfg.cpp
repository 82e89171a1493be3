#include "arch/systolic/scalesim_cfg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "sim/config/error.h"
#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "sim/config/schema.h"

namespace mlsim::arch::systolic {

namespace {

struct Entry {
    std::string value;
    cfg::SourceLoc loc;  // of the value
    cfg::SourceLoc key_loc;
};

struct KeySpec {
    const char* section;
    const char* key;
    bool required;
};

// What SCALE-Sim v2 reads. Offsets, banks and request buffers shape its address traces, which mlsim
// does not generate, so they are accepted and ignored.
constexpr KeySpec k_keys[] = {
    {"general", "run_name", false},
    {"architecture_presets", "ArrayHeight", true},
    {"architecture_presets", "ArrayWidth", true},
    {"architecture_presets", "IfmapSramSzkB", true},
    {"architecture_presets", "FilterSramSzkB", true},
    {"architecture_presets", "OfmapSramSzkB", true},
    {"architecture_presets", "IfmapOffset", false},
    {"architecture_presets", "FilterOffset", false},
    {"architecture_presets", "OfmapOffset", false},
    {"architecture_presets", "Dataflow", true},
    {"architecture_presets", "Bandwidth", false},
    {"architecture_presets", "MemoryBanks", false},
    {"architecture_presets", "ReadRequestBuffer", false},
    {"architecture_presets", "WriteRequestBuffer", false},
    {"run_presets", "InterfaceBandwidth", false},
    {"run_presets", "UseRamulatorTrace", false},
};

std::string trim(std::string s) {
    const auto not_space = [](unsigned char c) { return !std::isspace(c); };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
    s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
    return s;
}

// Energies (est.): SCALE-Sim gives none. On chip, Horowitz (ISSCC 2014, 45 nm), unscaled, as the
// scalesim-google and scalesim-scale presets state them.
constexpr double k_clock_hz = 1e9;        // SCALE-Sim counts cycles only; 1 GHz reads them as ns
constexpr double k_mac_pJ = 0.3;          // int8 MAC: 0.2 pJ multiply + 0.1 pJ int32 add
constexpr double k_sram_pJ_per_B = 12.5;  // 100 pJ per 64-bit read of a 1 MB array
constexpr double k_hop_pJ = 0.03;         // one word to a neighbouring PE ~ an 8-bit add
// Each PE drives at most three neighbour links in a cycle: the streamed operand to the right, the
// other operand (streamed, or the stationary one's shadow load) and the partial sum or drained output
// downward. Only the TDP uses it.
constexpr double k_links_per_pe = 3;

// Main memory (est.): the technology an accelerator would pair with the interface bandwidth the .cfg
// implies, at its energy per bit from Accelergy's CACTI tables (shared/reference/hardware.md).
// Up to 204.8 GB/s, what one 256-bit LPDDR5 interface carries at 6.4 Gb/s a pin (Jetson AGX Orin's,
// the widest LPDDR bus there): LPDDR4/5, 8 pJ/bit, the off-package DRAM of edge accelerators and of
// Accelergy's Eyeriss example. DDR's terminated DIMM buses cost 5.6 (DDR4) to 8.75 (DDR3) times as much
// a bit and are chosen for capacity, which a .cfg does not state. Above 204.8 GB/s, HBM2 at 3.9 pJ/bit:
// the accelerators in hardware.md that need more (TPU v4, A100, H100) stack HBM beside the die.
constexpr double k_lpddr_max_Bps = 204.8e9;
struct DramClass {
    const char* name;
    double pJ_per_B;
};
DramClass dram_class(double bandwidth_Bps) {
    if (bandwidth_Bps > k_lpddr_max_Bps) return {"HBM2, 3.9 pJ/bit", 3.9 * 8};
    return {"LPDDR4, 8 pJ/bit", 8.0 * 8};
}

// `max` keeps the device that is built from it inside the device schema's ranges (limits.h), so a
// huge value is reported here, at its line, rather than as a derived figure.
int64_t positive_int(const Entry& e, const std::string& key, int64_t max) {
    int64_t v = 0;
    size_t used = 0;
    try {
        v = std::stoll(e.value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != e.value.size())
        cfg::fail(e.loc, key, fmt::format("expected a positive integer, found \"{}\"", e.value));
    if (v <= 0) cfg::fail(e.loc, key, fmt::format("must be greater than 0, found {}", v));
    if (v > max) cfg::fail(e.loc, key, fmt::format("must be at most {}, found {}", max, v));
    return v;
}

// The systolic section's largest array side; SRAM sizes (in kB) whose sum stays within the size limit;
// the interface's words per cycle (limits.h).
constexpr int64_t k_max_side = limits::max_array_side;
constexpr int64_t k_max_kib = static_cast<int64_t>(limits::quantity_range(cfg::Dim::size).max / 1024 / 4);
constexpr int64_t k_max_words_per_cycle = limits::max_cfg_words_per_cycle;

}  // namespace

cfg::Node scalesim_cfg_document(const std::string& path) {
    std::istringstream in(cfg::read_text_file(path, cfg::SourceLoc{path, 0, 0}, ""));

    std::map<std::string, Entry> entries;     // "section.key"
    std::map<std::string, int> section_line;  // where each section header is (its first one)
    std::string section;
    std::string line;
    int lineno = 0;
    std::vector<std::string> sections, all_keys;
    for (const KeySpec& k : k_keys) {
        if (std::find(sections.begin(), sections.end(), k.section) == sections.end())
            sections.push_back(k.section);
        all_keys.push_back(k.key);
    }
    while (std::getline(in, line)) {
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const std::string t = trim(line);
        if (t.empty() || t[0] == '#' || t[0] == ';') continue;
        const int indent = static_cast<int>(line.find_first_not_of(" \t"));
        if (t.front() == '[') {
            if (t.back() != ']')
                cfg::fail(cfg::SourceLoc{path, lineno, indent + 1}, "",
                          fmt::format("malformed section header \"{}\"", t));
            section = trim(t.substr(1, t.size() - 2));
            if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
                const std::string near = cfg::nearest(section, sections);
                cfg::fail(cfg::SourceLoc{path, lineno, indent + 1}, "",
                          fmt::format("unknown section [{}]{}", section,
                                      near.empty() ? "" : fmt::format("; did you mean [{}]?", near)));
            }
            section_line.emplace(section, lineno);
            continue;
        }
        const size_t sep = t.find_first_of(":=");
        if (sep == std::string::npos)
            cfg::fail(cfg::SourceLoc{path, lineno, indent + 1}, "",
                      fmt::format("expected 'Key: value' or 'Key = value', found \"{}\"", t));
        const std::string key = trim(t.substr(0, sep));
        const std::string value = trim(t.substr(sep + 1));
        const cfg::SourceLoc key_loc{path, lineno, indent + 1};
        const size_t vpos = line.find(value, line.find_first_of(":=") + 1);
        const cfg::SourceLoc val_loc{path, lineno,
                                     static_cast<int>(vpos == std::string::npos ? 0 : vpos + 1)};
        if (section.empty())
            cfg::fail(key_loc, key, "key outside of any section; SCALE-Sim configs start with [general]");
        const KeySpec* spec = nullptr;
        for (const KeySpec& k : k_keys)
            if (section == k.section && key == k.key) spec = &k;
        if (!spec) {
            std::vector<std::string> in_section;
            for (const KeySpec& k : k_keys)
                if (section == k.section) in_section.push_back(k.key);
            const std::string near = cfg::nearest(key, in_section);
            cfg::fail(key_loc, section + "." + key,
                      fmt::format("unknown key '{}' in [{}]{}", key, section,
                                  near.empty() ? "" : fmt::format("; did you mean '{}'?", near)));
        }
        const std::string id = section + "." + key;
        if (entries.count(id))
            cfg::fail(
                key_loc, id,
                fmt::format("duplicate key '{}' (first set at line {})", key, entries[id].key_loc.line));
        entries[id] = Entry{value, val_loc, key_loc};
    }
    for (const KeySpec& k : k_keys) {
        if (!k.required || entries.count(std::string(k.section) + "." + k.key)) continue;
        // At the section's header, where the key belongs; at the top when the section is missing too.
        const auto at = section_line.find(k.section);
        if (at == section_line.end())
            cfg::fail(cfg::SourceLoc{path, 1, 1}, "",
                      fmt::format("missing section [{}] (with its required key '{}')", k.section, k.key));
        cfg::fail(cfg::SourceLoc{path, at->second, 1}, "",
                  fmt::format("missing required key '{}' in [{}]", k.key, k.section));
    }

    const auto get = [&](const char* sec, const char* key) -> const Entry& {
        return entries.at(std::string(sec) + "." + key);
    };
    const auto has = [&](const char* sec, const char* key) {
        return entries.count(std::string(sec) + "." + key) > 0;
    };
    const cfg::SourceLoc file_loc{path, 1, 1};
    const auto scalar = [](const std::string& v, const cfg::SourceLoc& loc, const std::string& p) {
        return cfg::Node::make_scalar(v, loc, p);
    };

    const Entry& eh = get("architecture_presets", "ArrayHeight");
    const Entry& ew = get("architecture_presets", "ArrayWidth");
    const int64_t rows = positive_int(eh, "ArrayHeight", k_max_side);
    const int64_t cols = positive_int(ew, "ArrayWidth", k_max_side);
    const Entry& edf = get("architecture_presets", "Dataflow");
    std::string dataflow = edf.value;
    for (char& c : dataflow) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (dataflow != "os" && dataflow != "ws" && dataflow != "is")
        cfg::fail(edf.loc, "Dataflow", fmt::format("expected one of: os, ws, is; found \"{}\"", edf.value));

    bool calc = true;
    if (has("run_presets", "InterfaceBandwidth")) {
        const Entry& e = get("run_presets", "InterfaceBandwidth");
        if (e.value == "USER")
            calc = false;
        else if (e.value != "CALC")
            cfg::fail(e.loc, "InterfaceBandwidth",
                      fmt::format("expected CALC or USER, found \"{}\"", e.value));
    }
    // Checked in both modes: a bad value is a mistake even where CALC mode does not read it.
    if (has("architecture_presets", "Bandwidth"))
        (void)positive_int(get("architecture_presets", "Bandwidth"), "Bandwidth", k_max_words_per_cycle);
    int64_t words_per_cycle = rows + 2 * cols;  // what the array edge can consume per cycle
    cfg::SourceLoc bw_loc = file_loc;
    if (!calc) {
        if (!has("architecture_presets", "Bandwidth"))
            cfg::fail(get("run_presets", "InterfaceBandwidth").loc, "InterfaceBandwidth",
                      "USER mode needs 'Bandwidth' (words per cycle) in [architecture_presets]");
        const Entry& e = get("architecture_presets", "Bandwidth");
        words_per_cycle = positive_int(e, "Bandwidth", k_max_words_per_cycle);
        bw_loc = e.loc;
    }
    const std::string name = has("general", "run_name") ? get("general", "run_name").value : "scalesim";

    cfg::Node dev = cfg::Node::make_map(file_loc, "device");
    const auto p = [](const char* k) { return std::string("device.") + k; };
    dev.set("name",
            scalar(name, has("general", "run_name") ? get("general", "run_name").loc : file_loc, p("name")));
    dev.set("family", scalar("tpu", file_loc, p("family")));
    const DramClass dram = dram_class(static_cast<double>(words_per_cycle) * k_clock_hz);
    dev.set("description",
            scalar(fmt::format("SCALE-Sim config {} ({}x{} {}, {} interface bandwidth, main memory "
                               "as {} (est.))",
                               path, rows, cols, dataflow, calc ? "CALC" : "USER", dram.name),
                   file_loc, p("description")));
    dev.set("source", scalar(path, file_loc, p("source")));
    dev.set("clock", scalar("1GHz", file_loc, p("clock")));
    // No `peak:`: the systolic family derives it from the array (rows x cols x 2 x clock), so a sweep
    // over the array size of a .cfg system changes it too.
    cfg::Node mac = cfg::Node::make_map(file_loc, p("mac_energy"));
    mac.set("int8", scalar(fmt::format("{}pJ", k_mac_pJ), file_loc, p("mac_energy.int8")));
    dev.set("mac_energy", std::move(mac));

    cfg::Node memory = cfg::Node::make_sequence(file_loc, p("memory"));
    const auto level = [&](const std::string& lname, double cap, const std::string& bw,
                           const cfg::SourceLoc& loc, const std::string& energy, int i) {
        const std::string base = fmt::format("device.memory[{}]", i);
        cfg::Node m = cfg::Node::make_map(loc, base);
        m.set("name", scalar(lname, loc, base + ".name"));
        m.set("capacity", scalar(fmt::format("{}B", cap), loc, base + ".capacity"));
        m.set("bandwidth", scalar(bw, loc, base + ".bandwidth"));
        m.set("read_energy", scalar(energy, loc, base + ".read_energy"));
        return m;
    };
    const Entry& ei = get("architecture_presets", "IfmapSramSzkB");
    const Entry& ef = get("architecture_presets", "FilterSramSzkB");
    const Entry& eo = get("architecture_presets", "OfmapSramSzkB");
    const int64_t ifmap_kib = positive_int(ei, "IfmapSramSzkB", k_max_kib);
    const int64_t filter_kib = positive_int(ef, "FilterSramSzkB", k_max_kib);
    const int64_t ofmap_kib = positive_int(eo, "OfmapSramSzkB", k_max_kib);
    const double sram_total = static_cast<double>(ifmap_kib + filter_kib + ofmap_kib) * 1024;
    // On-chip: the three scratchpads together (roofline level); DRAM: SCALE-Sim does not size it.
    const std::string sram_energy = fmt::format("{}pJ/B", k_sram_pJ_per_B);
    memory.push_back(
        level("sram", sram_total, fmt::format("{}GB/s", rows + 2 * cols), file_loc, sram_energy, 0));
    memory.push_back(level("dram", 8.0 * 1024 * 1024 * 1024, fmt::format("{}GB/s", words_per_cycle), bw_loc,
                           fmt::format("{}pJ/B", dram.pJ_per_B), 1));
    dev.set("memory", std::move(memory));
    dev.set("static_power", scalar("0W", file_loc, p("static_power")));
    // (est.) TDP = every part at its configured peak rate, so that a run above it means an energy or a
    // rate is wrong: every MAC each cycle; the vector unit (one element per column per cycle) at half a
    // MAC an op; each buffer read and written at its bandwidth (one word per edge PE per cycle each way);
    // main memory at its bandwidth; every PE link busy.
    const double pes = static_cast<double>(rows * cols);
    const double edge_words = static_cast<double>(rows + 2 * cols);  // per cycle, each way
    const double pJ_per_cycle =
        pes * k_mac_pJ + static_cast<double>(cols) * k_mac_pJ / 2 + 2 * edge_words * k_sram_pJ_per_B +
        static_cast<double>(words_per_cycle) * dram.pJ_per_B + k_links_per_pe * pes * k_hop_pJ;
    const double tdp_W = pJ_per_cycle * 1e-12 * k_clock_hz;
    dev.set("tdp", scalar(fmt::format("{}W", tdp_W), file_loc, p("tdp")));
    dev.set("op_overhead", scalar("0s", file_loc, p("op_overhead")));

    cfg::Node sys = cfg::Node::make_map(eh.key_loc, p("systolic"));
    const auto sp = [](const std::string& k) { return "device.systolic." + k; };
    sys.set("rows", scalar(std::to_string(rows), eh.loc, sp("rows")));
    sys.set("cols", scalar(std::to_string(cols), ew.loc, sp("cols")));
    sys.set("arrays", scalar("1", file_loc, sp("arrays")));
    sys.set("dataflow", scalar(dataflow, edf.loc, sp("dataflow")));
    cfg::Node buffers = cfg::Node::make_map(file_loc, sp("buffers"));
    const auto buffer = [&](const char* bname, int64_t kib, const Entry& e, int64_t words) {
        const std::string base = sp("buffers.") + bname;
        cfg::Node b = cfg::Node::make_map(e.key_loc, base);
        b.set("name", scalar(std::string(bname) + "_sram", e.loc, base + ".name"));
        b.set("capacity", scalar(fmt::format("{}KiB", kib), e.loc, base + ".capacity"));
        b.set("bandwidth", scalar(fmt::format("{}GB/s", words), e.loc, base + ".bandwidth"));
        b.set("double_buffered", scalar("true", e.loc, base + ".double_buffered"));
        b.set("read_energy", scalar(sram_energy, e.loc, base + ".read_energy"));
        b.set("write_energy", scalar(sram_energy, e.loc, base + ".write_energy"));
        return b;
    };
    // The streaming operand enters along the rows and the stationary (or second) operand along the
    // columns: os and ws stream the ifmap from the left edge (rows) and feed the filter down the columns;
    // is keeps the ifmap in the array, loaded down the columns, and streams the filter from the left
    // (SCALE-Sim v2's operand matrices: is swaps the ifmap's and filter's roles). Each port as wide as its
    // edge.
    const bool input_stationary = dataflow == "is";
    buffers.set("ifmap", buffer("ifmap", ifmap_kib, ei, input_stationary ? cols : rows));
    buffers.set("filter", buffer("filter", filter_kib, ef, input_stationary ? rows : cols));
    buffers.set("ofmap", buffer("ofmap", ofmap_kib, eo, cols));
    sys.set("buffers", std::move(buffers));
    sys.set("pe_hop_energy", scalar(fmt::format("{}pJ", k_hop_pJ), file_loc, sp("pe_hop_energy")));
    dev.set("systolic", std::move(sys));

    cfg::Node doc = cfg::Node::make_map(file_loc, "");
    doc.set("device", std::move(dev));
    return doc;
}

SystemSpec load_scalesim_cfg(const std::string& path) {
    const cfg::Node doc = scalesim_cfg_document(path);
    return system_of_one(device_from_node(cfg::validate(*doc.find("device"), device_schema())),
                         cfg::SourceLoc{path, 1, 1});
}

}  // namespace mlsim::arch::systolic

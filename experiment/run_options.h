#pragma once
// The options of an experiment (`mlsim run --batch 8`, a sweep file's `base: {batch: 8}` and its factor
// `batch: [1, 8]`), each declared once: name, short name, value kind, choices, default, one-line doc, and
// where its value goes.
//
// Contract:
// - An entry either sets a field of ExperimentOptions, or is a device override: its value is set at
//   `device_key` in the loaded system document (a ConfigOverride, re-validated with the device schema),
//   so it becomes part of the resolved config exactly as the same key path given as an override would.
//   ExperimentOptions has no field for a device-override entry.
// - A flag several device families declare (arch/family.h, FamilyOption) is one entry whose choices are
//   the union of theirs; applied, it sets the key of the family whose section the device has, and the
//   device schema then checks the value against that section's choices (located errors both).
// - Names are unique, and so are short names; make_run_options() checks both (MLSIM_CHECK).
// - run_options_schema() is the table as a config schema: kinds, choices, lower bounds, defaults and
//   docs are the entries' own. A sweep file's `base:` map is validated with it, and its keys are the
//   experiment keys a sweep factor may name.
// - A default-constructed ExperimentOptions holds every field entry's default (tests check this), so
//   options that are not given need not be applied.
// - check_run_options() checks options set in code (kinds, choices, lower bounds) with the messages the
//   command line gives, located at "<command line>" and keyed by the flag ("--batch").
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "experiment/experiment.h"
#include "sim/config/node.h"
#include "sim/config/schema.h"

namespace mlsim::exp {

struct RunOption {
    // name (the --flag and the sweep key), type (string, integer, boolean or choice), choices, default
    // (none: required, or decided later such as dtype), lower bound, doc.
    cfg::Param param;
    char short_name = 0;  // 'b' for -b; 0 for none
    // A field entry: `set` stores a value (already of the right kind) into the options; `get` reads the
    // field back as text, nullopt when unset (dtype's "the device's default").
    std::function<void(ExperimentOptions&, const cfg::Node&)> set;
    std::function<std::optional<std::string>(const ExperimentOptions&)> get;
    // A device-override entry: the key path its value is set at ("device.systolic.fidelity").
    std::string device_key;
    // A flag several families share (--fidelity): every family's key path, device_key first. The value
    // goes to the one whose section the device has (experiment.cpp, apply_overrides). Empty otherwise.
    std::vector<std::string> shared_keys;

    const std::string& name() const { return param.name; }
    bool is_device_override() const { return !device_key.empty(); }
    // "device.systolic.fidelity", or "device.systolic.fidelity | device.gpu.fidelity" for a shared flag.
    std::string keys_text() const;
};

// A device-override entry whose kind, choices and bounds are those the device schema declares at
// `key_path` (the device config's value is the default); `doc` says what it means on the command line.
RunOption device_option(std::string name, std::string key_path, std::string doc, char short_name = 0);
// A flag several families declare, each for a key of its own section: its choices are the union of theirs
// (in declaration order), its kind must be the same in every section, and its doc joins theirs.
RunOption shared_device_option(std::string name, const std::vector<std::string>& key_paths,
                               const std::vector<std::string>& docs);

// The table: the experiment's own entries, the built-in device override (--device-model), then `extra`:
// device-override entries from elsewhere.
std::vector<RunOption> make_run_options(std::vector<RunOption> extra = {});
// The table `mlsim run` and sweep files use, built once: make_run_options() with every run option the
// device families declare in the registry (arch/family.h, FamilyOption: --fidelity, --convention).
const std::vector<RunOption>& run_options();
const RunOption* find_run_option(std::string_view name, const std::vector<RunOption>& table = run_options());

cfg::Schema run_options_schema(const std::vector<RunOption>& table, std::string name, std::string doc);

// Applies one value: sets the field, or appends a ConfigOverride (located at the value, its `option`
// `given_as`, else the value's path) to o.device_overrides. A field entry parses the value as its kind.
void apply_run_option(const RunOption& entry, const cfg::Node& value, ExperimentOptions& o,
                      const std::string& given_as = {});
// Applies the entries present in a map validated with run_options_schema(table), in table order.
void apply_run_options(const cfg::Node& validated, ExperimentOptions& o,
                       const std::vector<RunOption>& table = run_options());
// Sets an option from code or the command line: the value is located at "<command line>", keyed by its
// flag ("--batch") for a field and by its key path for a device override. Unknown names are an internal
// error. A bad value is reported when the experiment is prepared (check_run_options, device schema).
void set_run_option(ExperimentOptions& o, std::string_view name, const std::string& value,
                    const std::vector<RunOption>& table = run_options());

void check_run_options(const ExperimentOptions& o, const std::vector<RunOption>& table = run_options());

}  // namespace mlsim::exp

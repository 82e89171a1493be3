#pragma once
// The family registry: every device model family (roofline, systolic, gpu, cpu, mcu, ...) lives in its
// own folder under arch/ and registers itself once, with everything the rest of mlsim needs to know
// about it: its name (the value of `device.model`), its config section and that section's schema
// (declared next to the model), the hardware categories (`device.family`) that may carry the section,
// how the section is parsed (and how it derives the device's peak throughput), the factory of its
// model, its run-time options and its summary lines.
//
// Adding a family touches its own folder, one line in arch/families.def and its tests; nothing else
// switches on family names.
//
// Contract:
// - families() lists the registered families in arch/families.def order. Registration happens on the
//   first call (register_all(), explicit, so static linking cannot drop a family); it is thread-safe.
// - Family names and section names are unique (an InternalError otherwise).
// - A family without a factory declares its section and schema only: its detailed model is not built
//   yet, so its devices run on the roofline, and `device.model: <it>` is a located user error that says so.
// - parse() is called by device_from_node() for every family whose section the device gives, after the
//   core keys are read and before the peaks are checked; it may fill DeviceSpec::peak_ops_per_s (peaks
//   derived from the family's own parameters) and must check that declared peaks agree with them
//   (located UserErrors). It returns the parsed section, kept in DeviceSpec::params.
// - Run options are device-config overrides: `--<flag> VALUE` sets device.<key> (e.g. --fidelity sets
//   device.systolic.fidelity), so the choice is part of the resolved config and of the run's hash.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "arch/device_spec.h"
#include "arch/system/system_spec.h"
#include "sim/config/node.h"
#include "sim/config/schema.h"

namespace mlsim::arch {

class DeviceModel;
struct LayerResult;

// A run-time option of a family: a command-line flag / sweep key that overrides one key of its section.
struct FamilyOption {
    std::string flag;      // "fidelity": --fidelity on the command line, `fidelity:` in a sweep's base
    std::string key_path;  // "device.systolic.fidelity": the device key it overrides
    std::string doc;       // one line for --help
};

// A system file format a family reads besides mlsim's YAML (e.g. SCALE-Sim's .cfg for the systolic
// family): wherever a system is taken, a file with this extension is loaded by `load`.
struct SystemFormat {
    std::string extension;    // ".cfg"
    std::string description;  // "SCALE-Sim config", for messages and `mlsim validate`
    std::function<SystemSpec(const std::string& path)> load;
};

struct Family {
    std::string name;                     // the value of `device.model`: roofline, systolic, gpu, cpu, mcu
    std::string description;              // one line for listings and --help
    std::string section;                  // the device config section it reads (`systolic:`); empty for none
    const cfg::Schema* schema = nullptr;  // that section's keys; nullptr when there is no section
    std::vector<std::string> hardware;    // `device.family` values that may carry the section
    // Parses and checks the validated section of `device` (the `device` map) into a family value;
    // may derive peaks into `spec`. Null: the section is declared but not read yet.
    std::function<std::shared_ptr<const FamilyParams>(const cfg::Node& device, DeviceSpec& spec)> parse;
    // Builds the family's model for a device. Null: not built yet (the device runs on the roofline).
    std::function<std::unique_ptr<DeviceModel>(const DeviceSpec&)> factory;
    std::vector<FamilyOption> options;
    std::vector<SystemFormat> system_formats;
    // Extra lines for the run summary (each printed indented, after the common lines); may be null.
    std::function<std::vector<std::string>(const std::vector<LayerResult>&)> summary;

    bool has_model() const { return static_cast<bool>(factory); }
};

// Adds a family (called by each family's register_<name>() function, from register_all()).
void register_family(Family family);

const std::vector<Family>& families();
// nullptr when no family has that name.
const Family* find_family(std::string_view name);
// Names of the families that have a model (the choices of `device.model`), in registration order.
std::vector<std::string> model_names();
// Every family option, in registration order. A flag may appear once per family: several families
// declaring it share it (experiment/run_options.h: one option whose choices are the union of theirs).
std::vector<FamilyOption> family_options();
// The format a family registered for this path's extension, or nullptr.
const SystemFormat* find_system_format(std::string_view path);

// Calls every family's register function once (arch/families.def); families() does it on first use.
void register_all();

}  // namespace mlsim::arch

#include "arch/family.h"

#include <mutex>
#include <set>

#include "sim/core/check.h"

// Each family's register function, declared from the one list of families.
#define MLSIM_FAMILY(name)        \
    namespace mlsim::arch::name { \
    void register_family();       \
    }
#include "arch/families.def"
#undef MLSIM_FAMILY

namespace mlsim::arch {

namespace {

std::vector<Family>& storage() {
    static std::vector<Family> registered;
    return registered;
}

}  // namespace

void register_all() {
#define MLSIM_FAMILY(name) name::register_family();
#include "arch/families.def"
#undef MLSIM_FAMILY
}

void register_family(Family family) {
    std::vector<Family>& all = storage();
    for (const Family& f : all) {
        MLSIM_CHECK(f.name != family.name, "device family '" + family.name + "' registered twice");
        MLSIM_CHECK(family.section.empty() || f.section != family.section,
                    "config section '" + family.section + "' registered by two families");
    }
    MLSIM_CHECK(family.section.empty() == (family.schema == nullptr),
                "family '" + family.name + "': a section needs a schema and a schema a section");
    all.push_back(std::move(family));
}

const std::vector<Family>& families() {
    static std::once_flag once;
    std::call_once(once, register_all);
    return storage();
}

const Family* find_family(std::string_view name) {
    for (const Family& f : families())
        if (f.name == name) return &f;
    return nullptr;
}

std::vector<std::string> model_names() {
    std::vector<std::string> out;
    for (const Family& f : families())
        if (f.has_model()) out.push_back(f.name);
    return out;
}

std::vector<FamilyOption> family_options() {
    // Several families may declare the same flag, each for its own section (a shared option); one family
    // declaring it twice is a mistake.
    std::vector<FamilyOption> out;
    for (const Family& f : families()) {
        std::set<std::string> flags;
        for (const FamilyOption& o : f.options) {
            MLSIM_CHECK(flags.insert(o.flag).second,
                        "family option --" + o.flag + " declared twice by family '" + f.name + "'");
            out.push_back(o);
        }
    }
    return out;
}

const SystemFormat* find_system_format(std::string_view path) {
    for (const Family& f : families())
        for (const SystemFormat& format : f.system_formats)
            if (path.size() > format.extension.size() &&
                path.substr(path.size() - format.extension.size()) == format.extension)
                return &format;
    return nullptr;
}

}  // namespace mlsim::arch

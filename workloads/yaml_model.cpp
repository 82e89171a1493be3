#include "workloads/yaml_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <map>
#include <tuple>

#include "sim/config/loader.h"
#include "sim/config/schema.h"

namespace mlsim::wl {

namespace {

using cfg::Node;

[[noreturn]] void fail_at(const Node& n, const std::string& msg) { cfg::fail(n.loc(), n.path(), msg); }
[[noreturn]] void fail_key(const Node& n, const std::string& msg) { cfg::fail(n.key_loc(), n.path(), msg); }

std::string suggest(std::string_view word, const std::vector<std::string>& candidates) {
    const std::string near = cfg::nearest(word, candidates);
    return near.empty() ? "" : fmt::format("; did you mean '{}'?", near);
}

struct Ctx {
    int64_t batch = 1;
    std::optional<int64_t> seq;
    mutable bool uses_batch = false;  // some shape or attribute read N
    mutable bool uses_seq = false;    // ... S
};

int64_t int_value(const Node& n, const Ctx& c) {
    if (n.is_scalar() && n.scalar() == "N") {
        c.uses_batch = true;
        return c.batch;
    }
    if (n.is_scalar() && n.scalar() == "S") {
        c.uses_seq = true;
        if (!c.seq)
            fail_at(n, "S is the sequence length, but neither the command line nor the file's `seq` sets it");
        return *c.seq;
    }
    return n.as_int();
}

Shape shape_value(const Node& n, const Ctx& c) {
    if (!n.is_sequence() || n.items().empty())
        fail_at(n, fmt::format("expected a shape such as [N, 3, 224, 224], found {}", n.kind_name()));
    Shape s;
    for (const Node& d : n.items()) {
        const int64_t v = int_value(d, c);
        if (v <= 0) fail_at(d, fmt::format("shape dimensions must be positive, found {}", v));
        s.push_back(v);
    }
    return s;
}

// The attributes of one op: typed access with defaults, errors located at the value or at the op.
class Attrs {
  public:
    Attrs(const Node& op, std::string name, std::string kind, const Ctx& ctx)
        : m_op(op), m_name(std::move(name)), m_kind(std::move(kind)), m_ctx(ctx) {}

    const std::string& kind() const { return m_kind; }
    const std::string& name() const { return m_name; }
    const Node* get(std::string_view key) const {
        const Node* n = m_op.find(key);
        return n && !n->is_null() ? n : nullptr;
    }
    [[noreturn]] void missing(std::string_view key) const {
        fail_at(m_op, fmt::format("op '{}' ({}) needs '{}'", m_name, m_kind, key));
    }
    int64_t integer(std::string_view key, std::optional<int64_t> dflt = std::nullopt) const {
        if (const Node* n = get(key)) return int_value(*n, m_ctx);
        if (!dflt) missing(key);
        return *dflt;
    }
    // An integer that the op keeps in an int (an axis): a value beyond that range is an error here,
    // not a silently truncated axis.
    int small_integer(std::string_view key, int dflt) const {
        const Node* n = get(key);
        if (!n) return dflt;
        const int64_t v = int_value(*n, m_ctx);
        if (v < INT_MIN || v > INT_MAX) fail_at(*n, fmt::format("{} {} is out of range", key, v));
        return static_cast<int>(v);
    }
    bool boolean(std::string_view key, bool dflt) const {
        const Node* n = get(key);
        return n ? n->as_bool() : dflt;
    }
    // A number for every axis, or one number per axis.
    std::optional<std::array<int64_t, 3>> per_axis(std::string_view key, int dims) const {
        const Node* n = get(key);
        if (!n) return std::nullopt;
        std::array<int64_t, 3> out{1, 1, 1};
        if (n->is_sequence()) {
            if (n->items().size() != static_cast<size_t>(dims))
                fail_at(*n, fmt::format("expected {} values (one per spatial axis), found {}", dims,
                                        n->items().size()));
            for (int i = 0; i < dims; ++i)
                out[static_cast<size_t>(i)] = int_value(n->items()[static_cast<size_t>(i)], m_ctx);
        } else {
            const int64_t v = int_value(*n, m_ctx);
            for (int i = 0; i < dims; ++i) out[static_cast<size_t>(i)] = v;
        }
        return out;
    }
    std::array<int64_t, 3> per_axis_or(std::string_view key, int dims, int64_t dflt) const {
        if (auto v = per_axis(key, dims)) return *v;
        std::array<int64_t, 3> out{1, 1, 1};
        for (int i = 0; i < dims; ++i) out[static_cast<size_t>(i)] = dflt;
        if (dflt == 0)
            for (int i = dims; i < 3; ++i) out[static_cast<size_t>(i)] = 0;
        return out;
    }
    Shape int_list(std::string_view key) const {
        const Node* n = get(key);
        if (!n) missing(key);
        if (!n->is_sequence()) fail_at(*n, fmt::format("expected a list, found {}", n->kind_name()));
        Shape s;
        for (const Node& d : n->items()) s.push_back(int_value(d, m_ctx));
        return s;
    }
    std::string choice(std::string_view key, std::string dflt,
                       const std::vector<std::string>& choices) const {
        const Node* n = get(key);
        if (!n) return dflt;
        const std::string v = n->as_string();
        if (std::find(choices.begin(), choices.end(), v) == choices.end())
            fail_at(*n, fmt::format("expected one of {}, found '{}'", fmt::join(choices, ", "), v));
        return v;
    }

  private:
    const Node& m_op;
    std::string m_name, m_kind;
    const Ctx& m_ctx;
};

int spatial_dims(std::string_view kind) {
    if (kind.find("1d") != std::string_view::npos) return 1;
    if (kind.find("3d") != std::string_view::npos) return 3;
    return 2;
}

OpAttr parse_conv(const Attrs& a, const std::vector<Shape>& in) {
    ConvAttr c;
    c.dims = spatial_dims(a.kind());
    const bool depthwise = a.kind() == "depthwise_conv2d";
    c.in_channels = a.integer("in_channels", 0);
    if (depthwise) {
        const int64_t channels =
            c.in_channels ? c.in_channels : (!in.empty() && in[0].size() > 1 ? in[0][1] : 1);
        c.groups = channels;
        c.out_channels = a.integer("out_channels", channels);
    } else {
        c.groups = a.integer("groups", 1);
        c.out_channels = a.integer("out_channels");
    }
    const auto kernel = a.per_axis("kernel", c.dims);
    if (!kernel) a.missing("kernel");
    c.kernel = *kernel;
    c.stride = a.per_axis_or("stride", c.dims, 1);
    c.dilation = a.per_axis_or("dilation", c.dims, 1);
    // Either a symmetric `padding` or `pad_begin` / `pad_end`: with both, `padding` was silently ignored.
    if (const Node* both = a.get("padding"); both && (a.get("pad_begin") || a.get("pad_end")))
        fail_at(*both, "give either padding or pad_begin / pad_end, not both");
    const auto pad = a.per_axis_or("padding", c.dims, 0);
    c.pad_begin = a.per_axis("pad_begin", c.dims).value_or(pad);
    c.pad_end = a.per_axis("pad_end", c.dims).value_or(pad);
    c.bias = a.boolean("bias", false);
    return c;
}

OpAttr parse_pool(const Attrs& a, const std::vector<Shape>&) {
    PoolAttr p;
    p.type = a.kind().find("max") != std::string::npos ? PoolType::max : PoolType::avg;
    p.dims = spatial_dims(a.kind());
    if (a.kind().rfind("global_", 0) == 0) {
        p.global = true;
        return p;
    }
    const auto kernel = a.per_axis("kernel", p.dims);
    if (!kernel) a.missing("kernel");
    p.kernel = *kernel;
    p.stride = a.per_axis("stride", p.dims).value_or(p.kernel);
    p.padding = a.per_axis_or("padding", p.dims, 0);
    // A window wholly in the padding has no input (PyTorch: "pad should be at most half of effective
    // kernel size").
    for (int i = 0; i < p.dims; ++i)
        if (p.padding[static_cast<size_t>(i)] > p.kernel[static_cast<size_t>(i)] / 2)  // 2 x p could overflow
            fail_at(
                *a.get("padding"),
                fmt::format("op '{}' ({}): padding {} is more than half the kernel {}: a window could lie "
                            "wholly in the padding",
                            a.name(), a.kind(), p.padding[static_cast<size_t>(i)],
                            p.kernel[static_cast<size_t>(i)]));
    return p;
}

OpAttr parse_eltwise(const Attrs& a, const std::vector<Shape>&) {
    for (Eltwise fn : {Eltwise::relu, Eltwise::relu6, Eltwise::sigmoid, Eltwise::tanh, Eltwise::silu,
                       Eltwise::gelu, Eltwise::rope, Eltwise::add, Eltwise::mul})
        if (eltwise_name(fn) == a.kind()) return EltwiseAttr{fn};
    return EltwiseAttr{};
}

OpAttr parse_attention(const Attrs& a, const std::vector<Shape>& in) {
    AttentionAttr at;
    at.heads = a.integer("heads");
    at.kv_heads = a.integer("kv_heads", 0);
    at.head_dim = a.integer("head_dim", 0);
    if (const Node* hd = a.get("head_dim"); hd && at.head_dim <= 0)
        fail_at(*hd,
                fmt::format("head_dim must be positive (leave it out to derive it), got {}", at.head_dim));
    at.decode = a.kind() == "attention_decode";
    if (at.decode) {
        at.cache_len = a.integer("cache_len");
        // New tokens attend to each other causally; with one new token the mask is moot.
        at.causal = in.size() >= 2 && in[0].size() >= 2 && in[1].size() >= 2 && in[0][1] == in[1][1];
    } else {
        at.causal = a.boolean("causal", true);
        at.skip_masked = a.boolean("skip_masked", false);
    }
    return at;
}

struct KindSpec {
    std::string kind;
    std::vector<std::string> keys;
    OpAttr (*parse)(const Attrs&, const std::vector<Shape>&);
};

const std::vector<KindSpec>& kinds() {
    static const std::vector<std::string> conv_keys = {"out_channels", "in_channels", "kernel",  "stride",
                                                       "padding",      "pad_begin",   "pad_end", "dilation",
                                                       "groups",       "bias"};
    static const std::vector<std::string> dw_keys = {"out_channels", "in_channels", "kernel",
                                                     "stride",       "padding",     "pad_begin",
                                                     "pad_end",      "dilation",    "bias"};
    static const std::vector<std::string> pool_keys = {"kernel", "stride", "padding"};
    auto none = [](const Attrs&, const std::vector<Shape>&) -> OpAttr { return SoftmaxAttr{}; };
    static const std::vector<KindSpec> all = [&] {
        std::vector<KindSpec> v;
        v.push_back({"linear",
                     {"out_features", "in_features", "bias"},
                     [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return LinearAttr{a.integer("in_features", 0), a.integer("out_features"),
                                           a.boolean("bias", true)};
                     }});
        v.push_back({"matmul", {"transpose_b"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return MatmulAttr{a.boolean("transpose_b", false)};
                     }});
        for (const char* k : {"conv1d", "conv2d", "conv3d"}) v.push_back({k, conv_keys, parse_conv});
        v.push_back({"depthwise_conv2d", dw_keys, parse_conv});
        for (const char* k : {"maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d"})
            v.push_back({k, pool_keys, parse_pool});
        v.push_back({"global_avgpool", {}, parse_pool});
        v.push_back({"global_maxpool", {}, parse_pool});
        for (const char* k : {"relu", "relu6", "sigmoid", "tanh", "silu", "gelu", "rope", "add", "mul"})
            v.push_back({k, {}, parse_eltwise});
        v.push_back({"batchnorm", {"features"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return NormAttr{NormType::batch, a.integer("features", 0)};
                     }});
        v.push_back({"layernorm", {"features"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return NormAttr{NormType::layer, a.integer("features", 0)};
                     }});
        v.push_back({"rmsnorm", {"features"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return NormAttr{NormType::rms, a.integer("features", 0)};
                     }});
        v.push_back({"softmax", {}, none});
        v.push_back({"attention_prefill",
                     {"heads", "kv_heads", "head_dim", "causal", "skip_masked"},
                     parse_attention});
        v.push_back({"attention_decode", {"heads", "kv_heads", "head_dim", "cache_len"}, parse_attention});
        v.push_back(
            {"embedding", {"rows", "dim"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                 return EmbeddingAttr{a.integer("rows"), a.integer("dim"), false, false, std::nullopt};
             }});
        v.push_back({"embedding_bag",
                     {"rows", "dim", "mode"},
                     [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return EmbeddingAttr{a.integer("rows"), a.integer("dim"), true,
                                              a.choice("mode", "sum", {"sum", "mean"}) == "mean",
                                              std::nullopt};
                     }});
        for (const char* k : {"rnn", "lstm", "gru"})
            v.push_back({k,
                         {"hidden_size", "input_size", "bias"},
                         [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                             const RnnCell cell = a.kind() == "rnn"   ? RnnCell::rnn
                                                  : a.kind() == "gru" ? RnnCell::gru
                                                                      : RnnCell::lstm;
                             return RnnAttr{cell, a.integer("input_size", 0), a.integer("hidden_size"),
                                            a.boolean("bias", true)};
                         }});
        v.push_back({"concat", {"axis"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return ConcatAttr{a.small_integer("axis", -1)};
                     }});
        v.push_back({"reshape", {"shape"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                         return ReshapeAttr{a.int_list("shape"), false};
                     }});
        v.push_back({"flatten", {}, [](const Attrs&, const std::vector<Shape>&) -> OpAttr {
                         return ReshapeAttr{{}, true};
                     }});
        v.push_back(
            {"slice", {"axis", "start", "length"}, [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                 return SliceAttr{a.small_integer("axis", 1), a.integer("start", 0), a.integer("length", 1)};
             }});
        v.push_back(
            {"dot_interaction",
             {"self_interaction", "pad_to"},
             [](const Attrs& a, const std::vector<Shape>&) -> OpAttr {
                 return InteractionAttr{0, 0, a.boolean("self_interaction", false), a.integer("pad_to", 1)};
             }});
        return v;
    }();
    return all;
}

const std::vector<std::string> k_common_keys = {"name",         "kind",  "inputs", "input_shape",
                                                "input_shapes", "dtype", "tied_to"};

struct InputRef {
    std::string name;
    int slot = 0;
    const Node* node = nullptr;
};

struct Decl {
    const Node* node = nullptr;
    std::string name;
    const KindSpec* spec = nullptr;
    std::vector<InputRef> inputs;
    std::optional<std::vector<Shape>> shapes;
    DType dtype = DType::fp32;
    std::string tied_to;
    std::optional<size_t> id;  // once built
};

InputRef parse_ref(const Node& n) {
    std::string text = n.as_string();
    InputRef r{text, 0, &n};
    if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
        int slot = 0;
        const char* b = text.data() + colon + 1;
        const char* e = text.data() + text.size();
        auto [p, ec] = std::from_chars(b, e, slot);
        if (ec != std::errc{} || p != e || slot < 0 || b == e)
            fail_at(n, fmt::format("expected 'op' or 'op:output', found '{}'", text));
        r.name = text.substr(0, colon);
        r.slot = slot;
    }
    return r;
}

Decl parse_decl(const Node& n, const Ctx& ctx, DType dflt_dtype) {
    if (!n.is_map())
        fail_at(n, fmt::format("expected an op (a map with name and kind), found {}", n.kind_name()));
    Decl d;
    d.node = &n;
    const Node* name = n.find("name");
    if (!name) fail_at(n, "an op needs a 'name'");
    d.name = name->as_string();
    if (d.name.empty()) fail_at(*name, "an op name must not be empty");
    const Node* kind = n.find("kind");
    if (!kind) fail_at(n, fmt::format("op '{}' needs a 'kind'", d.name));
    const std::string k = kind->as_string();
    std::vector<std::string> kind_names;
    for (const KindSpec& s : kinds()) {
        if (s.kind == k) d.spec = &s;
        kind_names.push_back(s.kind);
    }
    if (!d.spec) fail_at(*kind, fmt::format("unknown op kind '{}'{}", k, suggest(k, kind_names)));
    std::vector<std::string> valid = k_common_keys;
    valid.insert(valid.end(), d.spec->keys.begin(), d.spec->keys.end());
    for (const auto& [key, value] : n.entries())
        if (std::find(valid.begin(), valid.end(), key) == valid.end())
            fail_key(value, fmt::format("unknown attribute '{}' for op '{}' ({}){}", key, d.name, k,
                                        suggest(key, valid)));
    if (const Node* in = n.find("inputs")) {
        if (in->is_scalar())
            d.inputs.push_back(parse_ref(*in));
        else if (in->is_sequence())
            for (const Node& r : in->items()) d.inputs.push_back(parse_ref(r));
        else
            fail_at(*in, fmt::format("expected a list of op or input names, found {}", in->kind_name()));
    }
    const Node* one = n.find("input_shape");
    const Node* many = n.find("input_shapes");
    if (one && many) fail_key(*many, "give input_shape or input_shapes, not both");
    if (one) d.shapes = std::vector<Shape>{shape_value(*one, ctx)};
    if (many) {
        if (!many->is_sequence() || many->items().empty())
            fail_at(*many, "expected a list of shapes such as [[N, 64], [N, 64]]");
        d.shapes = std::vector<Shape>{};
        for (const Node& s : many->items()) d.shapes->push_back(shape_value(s, ctx));
    }
    if (d.inputs.empty() && !d.shapes)
        fail_at(
            n, fmt::format("op '{}' needs 'inputs' (names of ops or model inputs) or 'input_shape'", d.name));
    // Sources fix the input shapes; a declared shape would be a second, possibly different, answer.
    if (!d.inputs.empty() && d.shapes)
        fail_key(*(one ? one : many),
                 fmt::format("op '{}' gives both 'inputs' and '{}': give inputs (the shapes follow from "
                             "them) or input shapes (slots that edges may feed), not both",
                             d.name, one ? "input_shape" : "input_shapes"));
    d.dtype = dflt_dtype;
    if (const Node* dt = n.find("dtype")) {
        const std::string s = dt->as_string();
        const std::optional<DType> t = parse_dtype(s);
        if (!t) fail_at(*dt, fmt::format("unknown dtype '{}'{}", s, suggest(s, dtype_names())));
        d.dtype = *t;
    }
    if (const Node* t = n.find("tied_to")) d.tied_to = t->as_string();
    return d;
}

}  // namespace

Model load_model_yaml(const std::string& path, const ZooOptions& opts) {
    const Node doc = cfg::load_file(path);
    if (!doc.is_map())
        fail_at(doc, fmt::format("expected a model (a map with 'ops'), found {}", doc.kind_name()));
    const std::vector<std::string> top = {"name", "description", "seq", "inputs", "ops", "edges"};
    for (const auto& [key, value] : doc.entries())
        if (std::find(top.begin(), top.end(), key) == top.end())
            fail_key(value, fmt::format("unknown key '{}'{}", key, suggest(key, top)));
    if (opts.batch < 1)
        cfg::fail(cfg::SourceLoc{path, 0, 0}, "",
                  fmt::format("batch must be at least 1, got {}", opts.batch));

    Ctx ctx;
    ctx.batch = opts.batch;
    if (opts.seq > 0)
        ctx.seq = opts.seq;
    else if (const Node* s = doc.find("seq")) {
        ctx.seq = s->as_int();
        if (*ctx.seq < 1) fail_at(*s, "seq must be positive");
    }
    std::string name =
        path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
    if (const size_t dot = name.rfind('.'); dot != std::string::npos) name.erase(dot);
    if (const Node* n = doc.find("name")) name = n->as_string();

    std::map<std::string, Shape> model_inputs;
    if (const Node* in = doc.find("inputs")) {
        if (!in->is_map())
            fail_at(*in, fmt::format("expected a map of input name -> shape, found {}", in->kind_name()));
        for (const auto& [key, value] : in->entries()) model_inputs[key] = shape_value(value, ctx);
    }
    const Node* ops = doc.find("ops");
    if (!ops) fail_at(doc, "a model needs 'ops'");
    if (!ops->is_sequence() || ops->items().empty()) fail_at(*ops, "expected a non-empty list of ops");

    std::vector<Decl> decls;
    std::map<std::string, size_t> by_name;
    for (const Node& n : ops->items()) {
        decls.push_back(parse_decl(n, ctx, opts.dtype));
        const Decl& d = decls.back();
        if (model_inputs.count(d.name))
            fail_at(*n.find("name"), fmt::format("op name '{}' is also the name of a model input", d.name));
        auto [it, fresh] = by_name.emplace(d.name, decls.size() - 1);
        if (!fresh)
            fail_at(*n.find("name"), fmt::format("op name '{}' is used twice (first at {})", d.name,
                                                 decls[it->second].node->loc().str()));
    }
    std::vector<std::string> known;
    for (const auto& [k, v] : model_inputs) known.push_back(k);
    for (const Decl& d : decls) known.push_back(d.name);
    for (const Decl& d : decls)
        for (const InputRef& r : d.inputs)
            if (!model_inputs.count(r.name) && !by_name.count(r.name))
                fail_at(*r.node, fmt::format("op '{}': no op or model input named '{}'{}", d.name, r.name,
                                             suggest(r.name, known)));

    // Ops are built once their sources are: in passes over the file, each pass building, in file order,
    // every op whose sources are built by then. An op's pass is therefore the latest pass of its
    // sources, plus one for a source listed after it; one topological sweep computes it, so loading
    // stays linear however the ops are ordered (repeating the passes would be quadratic for ops listed
    // in reverse).
    const size_t n = decls.size();
    std::vector<std::vector<size_t>> readers(n);  // the ops each op feeds, once per input slot
    std::vector<size_t> waiting(n, 0);            // op sources not yet ordered
    for (size_t i = 0; i < n; ++i)
        for (const InputRef& r : decls[i].inputs)
            if (!model_inputs.count(r.name)) {
                readers[by_name.at(r.name)].push_back(i);
                ++waiting[i];
            }
    std::vector<size_t> pass(n, 0);
    std::vector<size_t> order;
    order.reserve(n);
    for (size_t i = 0; i < n; ++i)
        if (waiting[i] == 0) order.push_back(i);
    for (size_t q = 0; q < order.size(); ++q) {
        const size_t j = order[q];
        for (const size_t i : readers[j]) {
            pass[i] = std::max(pass[i], pass[j] + (j > i ? 1 : 0));
            if (--waiting[i] == 0) order.push_back(i);
        }
    }
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return std::tie(pass[a], a) < std::tie(pass[b], b); });

    ModelBuilder b(name);
    for (const size_t i : order) {
        Decl& d = decls[i];
        std::vector<Shape> shapes;
        std::vector<std::optional<TensorRef>> srcs;
        for (const InputRef& r : d.inputs) {
            if (model_inputs.count(r.name)) {
                if (r.slot != 0)
                    fail_at(*r.node, fmt::format("model input '{}' has no output {}", r.name, r.slot));
                shapes.push_back(model_inputs.at(r.name));
                srcs.push_back(std::nullopt);
                continue;
            }
            const size_t id = *decls[by_name.at(r.name)].id;
            const Op& p = b.op(id);
            if (static_cast<size_t>(r.slot) >= p.outputs.size())
                fail_at(*r.node, fmt::format("op '{}' has no output {} (it has {})", r.name, r.slot,
                                             p.outputs.size()));
            shapes.push_back(p.outputs[static_cast<size_t>(r.slot)]);
            srcs.push_back(TensorRef{id, r.slot});
        }
        if (d.inputs.empty()) shapes = *d.shapes;
        const Attrs attrs(*d.node, d.name, d.spec->kind, ctx);
        Op op = make_op(d.name, d.spec->parse(attrs, shapes), shapes, d.dtype, d.node->loc(), d.node->path());
        if (op.kind != d.spec->kind && !(d.spec->kind == "depthwise_conv2d" || op.get<ConvAttr>()))
            fail_at(*d.node, fmt::format("op '{}' was declared {} but its attributes make it {}", d.name,
                                         d.spec->kind, op.kind));
        op.tied_to = d.tied_to;
        d.id = b.add(std::move(op), srcs);
    }
    if (order.size() < n) {
        // Unbuilt ops wait on each other: walk first unbuilt sources until an op repeats.
        size_t at = 0;
        while (decls[at].id) ++at;
        std::vector<size_t> walk;
        std::vector<size_t> step_of(n, SIZE_MAX);  // position of an op in the walk
        while (step_of[at] == SIZE_MAX) {
            step_of[at] = walk.size();
            walk.push_back(at);
            for (const InputRef& r : decls[at].inputs)
                if (by_name.count(r.name) && !decls[by_name.at(r.name)].id) {
                    at = by_name.at(r.name);
                    break;
                }
        }
        // walk[m..] each wait on the next, so data flows from the end of the walk back to walk[m].
        const auto start = walk.begin() + static_cast<std::ptrdiff_t>(step_of[at]);
        std::vector<std::string> cycle{"'" + decls[at].name + "'"};
        for (auto it = walk.end(); --it != start;) cycle.push_back("'" + decls[*it].name + "'");
        cycle.push_back(cycle.front());
        fail_at(*decls[at].node, fmt::format("model '{}' has a cycle: {}", name, fmt::join(cycle, " -> ")));
    }

    if (const Node* edges = doc.find("edges")) {
        if (!edges->is_sequence())
            fail_at(*edges, fmt::format("expected a list of edges, found {}", edges->kind_name()));
        const std::vector<std::string> edge_keys = {"from", "to", "slot", "from_slot"};
        for (const Node& e : edges->items()) {
            if (!e.is_map()) fail_at(e, "expected an edge such as {from: a, to: b, slot: 0}");
            for (const auto& [key, value] : e.entries())
                if (std::find(edge_keys.begin(), edge_keys.end(), key) == edge_keys.end())
                    fail_key(value,
                             fmt::format("unknown key '{}' in an edge{}", key, suggest(key, edge_keys)));
            const Node* from = e.find("from");
            const Node* to = e.find("to");
            if (!from || !to) fail_at(e, "an edge needs 'from' and 'to'");
            const Node* slot = e.find("slot");
            const Node* from_slot = e.find("from_slot");
            const auto slot_number = [](const Node* v) {
                if (!v) return 0;
                const int64_t k = v->as_int();
                if (k < 0 || k > INT_MAX) fail_at(*v, fmt::format("slot {} is out of range", k));
                return static_cast<int>(k);
            };
            b.connect(from->as_string(), slot_number(from_slot), to->as_string(), slot_number(slot), e.loc(),
                      e.path());
        }
    }
    // A batch the model never reads would leave its work that of one sample while every per-sample figure
    // divides by the batch: refused, not a silently wrong number.
    if (opts.batch > 1 && !ctx.uses_batch) {
        const Node* in = doc.find("inputs");
        cfg::fail(
            in ? in->key_loc() : doc.loc(), in ? in->path() : "",
            fmt::format("model '{}' never uses N (the batch) in a shape or attribute, so batch {} would "
                        "not change its work; put N in its input shapes (e.g. [N, 16]) or run batch 1",
                        name, opts.batch));
    }
    // A sequence length given for a model without one is refused, as the zoo refuses it.
    if (opts.seq > 0 && !ctx.uses_seq)
        cfg::fail(
            cfg::SourceLoc{path, 0, 0}, "",
            fmt::format("model '{}' never uses S (the sequence length), so seq {} would not change it; put S "
                        "in its shapes or give no sequence length",
                        name, opts.seq));
    return std::move(b).build();
}

}  // namespace mlsim::wl

#include "workloads/zoo/zoo.h"

#include <fmt/format.h>

#include <functional>

#include "sim/config/schema.h"

namespace mlsim::wl {

namespace {

struct Entry {
    std::string name, description;
    std::function<Model(const ZooOptions&)> build;
};

const std::vector<Entry>& registry() {
    static const std::vector<Entry> entries = {
        {"lenet5", "LeNet-5 (LeCun 1998, common variant: full C3, 10-way linear output), 32x32 grayscale",
         zoo::lenet5},
        {"resnet50", "ResNet-50 v1.5 (He 2016; torchvision), 224x224, 25.6 M params, 4.1 G MACs",
         zoo::resnet50},
        {"mobilenetv2", "MobileNetV2 1.0 (Sandler 2018; torchvision), 224x224, 3.5 M params, 300 M MACs",
         zoo::mobilenetv2},
        {"ds-cnn-kws", "DS-CNN keyword spotting (MLPerf Tiny reference), 49x10 MFCC input, 12 classes",
         zoo::ds_cnn_kws},
        {"ds-cnn-kws-m",
         "DS-CNN M keyword spotting (Hello Edge; ARM ML-KWS-for-MCU), 49x10 MFCC, 172 channels",
         zoo::ds_cnn_kws_m},
        {"vww-mobilenetv1",
         "MobileNetV1 0.25x visual wake words (MLPerf Tiny reference), 96x96 RGB, 2 classes",
         zoo::vww_mobilenetv1},
        {"resnet8-cifar", "ResNet-8 image classification (MLPerf Tiny reference), 32x32 CIFAR-10",
         zoo::resnet8_cifar},
        {"fc-autoencoder", "FC autoencoder anomaly detection (MLPerf Tiny reference), 640 features",
         zoo::fc_autoencoder},
        {"bert-base", "BERT-base encoder (Devlin 2019), 110 M params, seq = sequence length (default 128)",
         zoo::bert_base},
        {"gpt2-small-prefill", "GPT-2 small (124 M) prefill, seq = prompt length (default 1024)",
         [](const ZooOptions& o) { return zoo::gpt2("gpt2-small-prefill", o, false, false); }},
        {"gpt2-small-decode", "GPT-2 small (124 M) one decode step, seq = KV-cache length (default 1023)",
         [](const ZooOptions& o) { return zoo::gpt2("gpt2-small-decode", o, false, true); }},
        {"gpt2-xl-prefill", "GPT-2 XL (1.56 B) prefill, seq = prompt length (default 1024)",
         [](const ZooOptions& o) { return zoo::gpt2("gpt2-xl-prefill", o, true, false); }},
        {"gpt2-xl-decode", "GPT-2 XL (1.56 B) one decode step, seq = KV-cache length (default 1023)",
         [](const ZooOptions& o) { return zoo::gpt2("gpt2-xl-decode", o, true, true); }},
        {"llama2-7b-decode", "Llama-2-7B (6.74 B) one decode step, seq = KV-cache length (default 1024)",
         zoo::llama2_7b_decode},
        {"gpt3-175b-prefill",
         "GPT-3 175B (Brown 2020; 174.6 B) prefill / training pass, seq = prompt (default 2048)",
         [](const ZooOptions& o) { return zoo::gpt3_175b("gpt3-175b-prefill", o, false); }},
        {"gpt3-175b-decode", "GPT-3 175B one decode step, seq = KV-cache length (default 1024)",
         [](const ZooOptions& o) { return zoo::gpt3_175b("gpt3-175b-decode", o, true); }},
        {"llama2-70b-prefill",
         "Llama-2-70B (Touvron 2023; 68.98 B, GQA 64/8) prefill, seq = prompt (default 4096)",
         [](const ZooOptions& o) { return zoo::llama("llama2-70b-prefill", o, 2, true, false); }},
        {"llama2-70b-decode", "Llama-2-70B one decode step, seq = KV-cache length (default 1024)",
         [](const ZooOptions& o) { return zoo::llama("llama2-70b-decode", o, 2, true, true); }},
        {"llama3-8b-prefill", "Llama-3-8B (Meta 2024; 8.03 B, GQA 32/8) prefill, seq = prompt (default 8192)",
         [](const ZooOptions& o) { return zoo::llama("llama3-8b-prefill", o, 3, false, false); }},
        {"llama3-8b-decode", "Llama-3-8B one decode step, seq = KV-cache length (default 1024)",
         [](const ZooOptions& o) { return zoo::llama("llama3-8b-decode", o, 3, false, true); }},
        {"llama3-70b-prefill",
         "Llama-3-70B (Meta 2024; 70.55 B, GQA 64/8) prefill, seq = prompt (default 8192)",
         [](const ZooOptions& o) { return zoo::llama("llama3-70b-prefill", o, 3, true, false); }},
        {"llama3-70b-decode", "Llama-3-70B one decode step, seq = KV-cache length (default 1024)",
         [](const ZooOptions& o) { return zoo::llama("llama3-70b-decode", o, 3, true, true); }},
        {"mixtral-8x7b-prefill",
         "Mixtral 8x7B (Jiang 2024; 46.7 B, 12.9 B active, top-2 of 8 experts) prefill, seq = prompt "
         "(default "
         "32768)",
         [](const ZooOptions& o) { return zoo::mixtral_8x7b("mixtral-8x7b-prefill", o, false); }},
        {"mixtral-8x7b-decode",
         "Mixtral 8x7B one decode step, seq = KV-cache length (default 1024); each expert runs on "
         "ceil(batch x 2 / 8) tokens (balanced routing rounded up: an upper bound, all 8 experts below batch "
         "4)",
         [](const ZooOptions& o) { return zoo::mixtral_8x7b("mixtral-8x7b-decode", o, true); }},
        {"dlrm-mlperf",
         "DLRM, MLPerf Criteo Terabyte config (26 tables x 128, 24 B params); seq = pooling "
         "factor (default 1)",
         zoo::dlrm_mlperf},
        {"dlrm-dle",
         "DLRM as NVIDIA DeepLearningExamples trains it: dlrm-mlperf with the interaction output padded to "
         "480",
         zoo::dlrm_dle},
        {"dlrm-kaggle",
         "DLRM, reference Criteo Kaggle config (26 tables x 16, 541 M params: one GPU); seq = pooling factor "
         "(default 1)",
         zoo::dlrm_kaggle},
        {"dlrm-dcnv2",
         "DLRM-DCNv2, MLPerf Training v3+ config (26 tables x 128 capped at 40 M rows, multi-hot, 3 low-rank "
         "cross layers; 26.2 B params)",
         zoo::dlrm_dcnv2},
        {"mlp3",
         "3-layer MLP d->h->h->k, no biases; d = image^2 (default 28 -> 784), h = hidden (default 1024), "
         "k = 10",
         zoo::mlp3},
    };
    return entries;
}

}  // namespace

namespace zoo {

void option_error(std::string_view model, std::string_view key, std::string_view message) {
    cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, key, fmt::format("model '{}': {}", model, message));
}

void check_options(std::string_view model, const ZooOptions& o, bool allow_seq, bool allow_image,
                   bool allow_hidden) {
    if (o.batch < 1) option_error(model, "batch", fmt::format("batch must be at least 1, got {}", o.batch));
    if (!allow_seq && o.seq != 0) option_error(model, "seq", "this model takes no sequence length");
    if (!allow_image && o.image != 0) option_error(model, "image", "this model takes no image size");
    if (!allow_hidden && o.hidden != 0) option_error(model, "hidden", "this model takes no hidden width");
}

int64_t pick(std::string_view model, std::string_view key, int64_t given, int64_t dflt, int64_t lo,
             int64_t hi) {
    const int64_t v = given == 0 ? dflt : given;
    if (v < lo || v > hi)
        option_error(model, key, fmt::format("{} must be between {} and {}, got {}", key, lo, hi, v));
    return v;
}

}  // namespace zoo

std::vector<ZooEntry> zoo_list() {
    std::vector<ZooEntry> out;
    for (const Entry& e : registry()) out.push_back(ZooEntry{e.name, e.description});
    return out;
}

Model zoo_build(std::string_view name, const ZooOptions& opts) {
    std::vector<std::string> names;
    for (const Entry& e : registry()) {
        if (e.name == name) return e.build(opts);
        names.push_back(e.name);
    }
    const std::string near = cfg::nearest(name, names);
    cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "model",
              fmt::format("unknown model '{}'{}", name,
                          near.empty() ? "; `mlsim list models` lists the zoo"
                                       : fmt::format("; did you mean '{}'?", near)));
}

}  // namespace mlsim::wl

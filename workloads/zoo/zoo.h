#pragma once
// Internal to the zoo: the builders behind zoo_build() and the option checks they share.
// Contract: each builder validates the ZooOptions it takes (and rejects those it does not) with a
// UserError located at the command line, then returns a validated Model whose op names follow the
// reference implementation's module names where there is one (torchvision, Hugging Face).
#include <string_view>

#include "workloads/model.h"

namespace mlsim::wl::zoo {

[[noreturn]] void option_error(std::string_view model, std::string_view key, std::string_view message);
// Positive batch; `seq`, `image` and `hidden` rejected unless the model takes them (allow_* = true).
void check_options(std::string_view model, const ZooOptions& o, bool allow_seq, bool allow_image,
                   bool allow_hidden = false);
int64_t pick(std::string_view model, std::string_view key, int64_t given, int64_t dflt, int64_t lo,
             int64_t hi);

Model lenet5(const ZooOptions& o);
Model resnet50(const ZooOptions& o);
Model mobilenetv2(const ZooOptions& o);
Model ds_cnn_kws(const ZooOptions& o);
Model ds_cnn_kws_m(const ZooOptions& o);
Model vww_mobilenetv1(const ZooOptions& o);
Model resnet8_cifar(const ZooOptions& o);
Model fc_autoencoder(const ZooOptions& o);
Model bert_base(const ZooOptions& o);
Model gpt2(std::string_view name, const ZooOptions& o, bool xl, bool decode);
Model llama2_7b_decode(const ZooOptions& o);
Model gpt3_175b(std::string_view name, const ZooOptions& o, bool decode);
Model llama(std::string_view name, const ZooOptions& o, int version, bool big,
            bool decode);  // 2-70b, 3-8b, 3-70b
Model mixtral_8x7b(std::string_view name, const ZooOptions& o, bool decode);
Model dlrm_mlperf(const ZooOptions& o);
Model dlrm_dle(const ZooOptions& o);
Model dlrm_criteo_tb(const std::string& name, const ZooOptions& o, int64_t pad_to);
Model dlrm_kaggle(const ZooOptions& o);
Model dlrm_dcnv2(const ZooOptions& o);
Model mlp3(const ZooOptions& o);

}  // namespace mlsim::wl::zoo

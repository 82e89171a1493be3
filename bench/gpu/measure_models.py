#!/usr/bin/env python3
"""Measures whole-model inference on a real NVIDIA GPU with PyTorch, for
analysis/reproduce/gpu_models_h200.py: the zoo models that mlsim also has, with random weights (timing does
not depend on their values).

    python3 bench/gpu/measure_models.py [--out FILE]        (default: $OUT/gpu_models.json)

Each case is timed two ways, each the median of 5 timed batches of back-to-back forwards (CUDA events; a
batch lasts >= 50 ms): `eager` (PyTorch's eager mode: one host dispatch per kernel) and `graph` (the
forward captured once in a CUDA graph and replayed: the GPU's time without the host). One profiled forward
of each case counts its kernels and sums their GPU time (torch.profiler); for some, per kernel name too.
  resnet50      torchvision's ResNet-50 (v1.5), eval, bf16, channels-last, batch 1 / 8 / 64 / 256
  bert-base     transformers' BertModel (BERT-base), eval, bf16, its default attention, seq 128, batch 1 / 8 / 32 /
                128
  gpt2-*        transformers' GPT2LMHeadModel (small, XL: with the LM head), eval, bf16, its default attention,
                prefill of 1024 tokens, batch 1
  llama2-7b     one decode step of Llama-2-7B (32 layers, hidden 4096, FFN 11008, 32 heads, vocab 32000; RMSNorm,
                RoPE, SwiGLU, SDPA over a preallocated KV cache of 1024 tokens), written here in plain PyTorch,
                bf16, batch 1 / 8 / 32: the new token's logits from 1024 cached positions.
"""
import argparse
import json
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

RESULTS = {"meta": {}, "models": [], "errors": []}
OUT_PATH = None


def log(*a):
    print(*a, flush=True)


def save():
    if OUT_PATH:
        with open(OUT_PATH, "w") as f:
            json.dump(RESULTS, f, indent=1)


def time_fn(fn, batches=5, min_batch_s=0.05, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 1
    while True:
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        t = start.elapsed_time(end) * 1e-3
        if t >= min_batch_s or reps >= 4096:
            break
        reps = min(4096, max(reps * 2, int(reps * min_batch_s / max(t, 1e-7)) + 1))
    per = []
    for _ in range(batches):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1e-3 / reps)
    return statistics.median(per), per


def graphed(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def kernel_profile(fn, by_name=False):
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = 0
    total_us = 0.0
    names = {}
    other = {}
    for e in prof.events():
        if getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CUDA"):
            us = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
            if "Memcpy" in e.name or "Memset" in e.name:
                o = other.setdefault(e.name[:60], [0, 0.0])
                o[0] += 1
                o[1] += us * 1e-6
                continue
            kernels += 1
            total_us += us
            n = names.setdefault(e.name[:100], [0, 0.0])
            n[0] += 1
            n[1] += us * 1e-6
    if by_name:
        top = sorted(names.items(), key=lambda kv: -kv[1][1])
        return kernels, total_us * 1e-6, {"kernels": [[k, c, t] for k, (c, t) in top], "copies": other}
    return kernels, total_us * 1e-6


def measure(name, fn, by_name=False, **info):
    row = {"model": name, **info}
    with torch.inference_mode():
        t, per = time_fn(fn)
        row["eager_s"], row["eager_batches"] = t, per
        try:
            if by_name:
                k, ksum, row["by_kernel"] = kernel_profile(fn, True)
            else:
                k, ksum = kernel_profile(fn)
            row["kernels"], row["kernel_time_s"] = k, ksum
        except Exception as e:  # the timing stands without the profile
            row["profile_error"] = repr(e)
        try:
            replay = graphed(fn)
            t2, per2 = time_fn(replay)
            row["graph_s"], row["graph_batches"] = t2, per2
            if by_name:
                try:
                    k2, ksum2, row["graph_by_kernel"] = kernel_profile(replay, True)
                    row["graph_kernels"], row["graph_kernel_time_s"] = k2, ksum2
                except Exception as e:
                    row["graph_profile_error"] = repr(e)
        except Exception as e:
            row["graph_error"] = repr(e)
    RESULTS["models"].append(row)
    save()
    log(f"{name:>12} {json.dumps(info)}: eager {row['eager_s'] * 1e3:8.3f} ms, graph "
        f"{row.get('graph_s', float('nan')) * 1e3:8.3f} ms, {row.get('kernels', -1)} kernels, "
        f"{row.get('kernel_time_s', float('nan')) * 1e3:8.3f} ms of kernels")


def section(name, fn):
    try:
        fn()
    except Exception as e:
        RESULTS["errors"].append(f"{name}: {e!r}\n{traceback.format_exc()}")
        log(f"{name}: FAILED {e!r}")
    save()
    torch.cuda.empty_cache()


def resnet50():
    import torchvision
    model = torchvision.models.resnet50(weights=None).eval().to("cuda", dtype=torch.bfloat16)
    model = model.to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    for batch in (1, 8, 64, 256):
        x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        measure("resnet50", lambda: model(x), by_name=batch in (1, 64), batch=batch, dtype="bf16")
    del model


def bert_base():
    from transformers import BertConfig, BertModel
    cfg = BertConfig()  # BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072
    model = BertModel(cfg, add_pooling_layer=False).eval().to("cuda", dtype=torch.bfloat16)
    for batch in (1, 8, 32, 128):
        ids = torch.randint(0, cfg.vocab_size, (batch, 128), device="cuda")
        measure("bert-base", lambda: model(input_ids=ids), by_name=batch in (1, 128), batch=batch, seq=128, dtype="bf16",
                attention=str(getattr(model.config, "_attn_implementation", "?")))
    del model


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    for name, kw in (("gpt2-small", {}), ("gpt2-xl", {"n_embd": 1600, "n_layer": 48, "n_head": 25})):
        cfg = GPT2Config(**kw)
        # With the LM head (vocabulary 50257), as the zoo's gpt2-*-prefill.
        model = GPT2LMHeadModel(cfg).eval().to("cuda", dtype=torch.bfloat16)
        ids = torch.randint(0, cfg.vocab_size, (1, 1024), device="cuda")
        measure(name + "-prefill", lambda: model(input_ids=ids, use_cache=False), by_name=True, batch=1, seq=1024,
                dtype="bf16", lm_head=True,
                attention=str(getattr(model.config, "_attn_implementation", "?")))
        del model
        torch.cuda.empty_cache()


class LlamaDecode:
    """One decode step of Llama-2-7B over a KV cache of `cache` tokens, static shapes (graph-capturable)."""

    def __init__(self, batch, cache=1024, layers=32, hidden=4096, ffn=11008, heads=32, vocab=32000):
        dt, dev = torch.bfloat16, "cuda"
        self.batch, self.cache, self.heads, self.hd = batch, cache, heads, hidden // heads
        std = 0.02
        self.embed = torch.randn(vocab, hidden, device=dev, dtype=dt) * std
        self.layers = []
        for _ in range(layers):
            self.layers.append({
                "ln1": torch.ones(hidden, device=dev, dtype=dt), "ln2": torch.ones(hidden, device=dev, dtype=dt),
                "wqkv": torch.randn(3 * hidden, hidden, device=dev, dtype=dt) * std,
                "wo": torch.randn(hidden, hidden, device=dev, dtype=dt) * std,
                "wgu": torch.randn(2 * ffn, hidden, device=dev, dtype=dt) * std,
                "wd": torch.randn(hidden, ffn, device=dev, dtype=dt) * std,
                "k": torch.randn(batch, heads, cache + 1, self.hd, device=dev, dtype=dt),
                "v": torch.randn(batch, heads, cache + 1, self.hd, device=dev, dtype=dt),
            })
        self.norm = torch.ones(hidden, device=dev, dtype=dt)
        self.head = torch.randn(vocab, hidden, device=dev, dtype=dt) * std
        self.tokens = torch.randint(0, vocab, (batch, 1), device=dev)
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2, device=dev, dtype=torch.float32) / self.hd))
        ang = cache * inv
        self.cos = torch.cat([ang.cos(), ang.cos()]).to(dt)
        self.sin = torch.cat([ang.sin(), ang.sin()]).to(dt)
        self.params = sum(t.numel() for L in self.layers for n, t in L.items() if n not in ("k", "v"))
        self.params += self.embed.numel() + self.head.numel() + self.norm.numel()

    def rms(self, x, w):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(v + 1e-5)).to(x.dtype) * w

    def rope(self, x):
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * self.cos + rot * self.sin

    def step(self):
        b, H, D = self.batch, self.heads, self.hd
        x = self.embed[self.tokens]  # [b, 1, hidden]
        for L in self.layers:
            h = self.rms(x, L["ln1"])
            q, k, v = F.linear(h, L["wqkv"]).view(b, 1, 3, H, D).unbind(2)
            q, k = self.rope(q.transpose(1, 2)), self.rope(k.transpose(1, 2))
            L["k"][:, :, self.cache:self.cache + 1].copy_(k)
            L["v"][:, :, self.cache:self.cache + 1].copy_(v.transpose(1, 2))
            a = F.scaled_dot_product_attention(q, L["k"], L["v"])
            x = x + F.linear(a.transpose(1, 2).reshape(b, 1, H * D), L["wo"])
            h = self.rms(x, L["ln2"])
            g, u = F.linear(h, L["wgu"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, L["wd"])
        return F.linear(self.rms(x, self.norm), self.head)


def llama():
    for batch in (1, 8, 32):
        m = LlamaDecode(batch)
        measure("llama2-7b-decode", m.step, by_name=True, batch=batch, seq=1024, dtype="bf16", params=m.params)
        del m
        torch.cuda.empty_cache()


def main():
    global OUT_PATH
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_models.json"))
    args = ap.parse_args()
    OUT_PATH = args.out
    p = torch.cuda.get_device_properties(0)
    RESULTS["meta"] = {"gpu": p.name, "sms": p.multi_processor_count, "torch": torch.__version__,
                       "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                       "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        import transformers
        RESULTS["meta"]["transformers"] = transformers.__version__
    except Exception:
        pass
    log(json.dumps(RESULTS["meta"]))
    t0 = time.time()
    section("resnet50", resnet50)
    section("bert-base", bert_base)
    section("gpt2", gpt2)
    section("llama2-7b", llama)
    RESULTS["meta"]["seconds"] = time.time() - t0
    save()
    log(f"wrote {OUT_PATH}: {len(RESULTS['models'])} cases, {len(RESULTS['errors'])} errors, {time.time() - t0:.0f} s")
    for e in RESULTS["errors"]:
        log(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())

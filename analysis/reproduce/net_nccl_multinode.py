#!/usr/bin/env python3
"""Large-message all-reduce bus bandwidth across nodes (InfiniBand), measured with nccl-tests and published
by NVIDIA's NCCL maintainers or in public benchmark repositories, against `mlsim collective` (issue 12).

    /usr/bin/python3 analysis/reproduce/net_nccl_multinode.py [--mlsim build/mlsim]

The systems are the presets of configs/systems (dgx-a100-2node, dgx-a100-16node, superpod-a100,
superpod-h100-1024), or one of them cut to the measured machine's size by changing the node count or the
GPUs per node and nothing else (written to a temporary directory; the per-node hardware, NICs, fabric
keys, latencies and efficiencies stay those of the preset). Nothing here is fitted to these figures: the
NICs are 25 and 50 GB/s links (HDR and NDR) at efficiency 0.96 (NCCL src/graph/topo.h NET_BW 12.0 GB/s
per 100 Gb/s), as the presets have them.

The measurements:
- NVIDIA/nccl#412 (NCCL maintainer sjeaugey): one HDR 200 Gb/s NIC per node, all_reduce_perf -b 8 -e 8G:
  "24GB/s inter-node" busbw at 8 GB, the figure the maintainer says such a setup should reach (an expected
  figure, not a measurement). Modelled as two nodes of one A100 each (dgx-a100-2node cut to one
  GPU per node): the ring crosses one NIC per direction, as NCCL's does with one NIC per node.
- NVIDIA/nccl-tests#290 (NCCL maintainer AddyLaddy): "For NDR @ 400Gbps you should see 46-48GB/s per
  NIC"; NVIDIA/nccl-tests#267 (same): "CX-7 NICs at NDR rate (400Gbps) should achieve up to 48-49GB/s per
  NIC". Modelled as two nodes of one H100 each (superpod-h100-1024 cut to 2 nodes of 1 GPU); published
  figure 47.5 GB/s, the middle of 46-49.
- NVIDIA/nccl#812 (AddyLaddy): "On an Nvidia DGX-A100 system we have 8x200Gbit/s IB cards and we measure
  192GB/s AllReduce BusBW", in reply to a ring measurement on two nodes (NVIDIA advises NCCL_ALGO=RING on
  two nodes, where the default tree's busbw exceeds the NICs' limit: nccl#812, nccl-tests#196). Compared
  with mlsim's ring on dgx-a100-2node, and with the automatic choice on dgx-a100-16node and superpod-a100
  (at 16 and 128 nodes NCCL's ring and tree are both held to the NICs' 8 x ~24 GB/s).
- ZiyanIshani/vpbenchmarking results/nccl/nccl_multinode/nccl_allreduce_20260224_225706.txt (Voltage Park
  with Georgia Tech): 4 nodes x 8 H100 SXM, 8 x 400 Gb/s InfiniBand per node ("3.2 Tbps"), NCCL 2.24.3,
  default algorithm: 324.48 GB/s busbw at 1 GiB and 330.93 GB/s at 8 GiB. Modelled as superpod-h100-1024
  cut to 4 nodes (one scalable unit's leaves; the measured fabric's exact shape is not published).

Tolerance: +-5 % (the maintainers' per-NIC ranges span 46-49 GB/s, +-3 %).

What the model does across nodes (arch/net/impl/flow_network.h): as NCCL builds its channels (NVIDIA/nccl
src/graph/search.cc, v2.30.7), a ring across nodes of k-NIC machines is k rings, each with 1/k of the data
and its hops between nodes on a different NIC (so the DGX A100 pair reaches 8 x 24 GB/s), and the tree
all-reduce is a chain in each node and NCCL's double binary tree between nodes, one pair of trees per NIC.
Per-step latency between nodes: NCCL's hwLatencies NET rows (src/graph/tuning.cc, v2.30.7 commit 5067397c):
ring 2.7 / 4.0 / 14.0 us (LL / LL128 / Simple; the presets' NIC paths are 2.7 us, the rest is added per
step), tree 5.0 / 8.5 / 14 us per step between nodes.

Known model limits these cases show (see the notes printed with each):
- The automatic choice takes among NCCL's own candidates (ring, tree, NVLS_TREE with Simple; CollNet and PAT
  are not modelled) with NCCL v2.30.7's per-call latencies; on 4 x 8 H100 it picks the tree (LL / LL128)
  below ~128 MiB: 35.2 us at 8 B (NCCL's own tree formula: 6.8 + 2 x (7 x 0.6 + log2(4) x 5.0) = 35.2 us),
  61.3 us at 512 KiB and 192 us at 8 MiB, 8-23 % under the measured times; the lock-step chunk steps of the
  tree below still pay less per chunk than NCCL's measured pipeline does at mid sizes (not modelled).
- Collectives run in lock-step: a pipelined chunk's step pays its latency before the next chunk moves, so
  trees and chains over many steps lose bandwidth to it (superpod-a100, 128 nodes: the tree's ~1,050 steps
  of 512 KiB chunks pay 14 us each with Simple), and a ring across nodes pays the network's per-step
  latency on all 2(p-1) steps, where NCCL's model charges it on the 2(N-1) steps between nodes and
  max(NVLink latency, getNetOverhead) on the rest.
- The NICs' payload rate bounds the ring: 8 x 48 GB/s on a DGX H100 (NDR at 0.96), the maintainers'
  per-NIC figure (nccl-tests#290, #267); the 4-node H100 cluster measured lower (331 GB/s at 8 GiB, ~41 GB/s
  per NIC), for reasons its report does not give (not modelled).

NCCL's rules across nodes (NVIDIA/nccl src/graph/tuning.cc, snapshot 5067397c) and where mlsim stands:
- LL128 is on by default across nodes only when each GPU reaches its NIC through a PCIe switch (path type
  <= PXB; Hopper and later: <= PXN) and the node's GPUs talk over NVLink (<= NVB), with equal compute
  capabilities. The DGX presets (one NIC per GPU behind its PCIe switch) qualify, so mlsim's LL128 across
  their nodes agrees; jetson-orin-10gbe (SoC Ethernet) would not, and mlsim still offers LL128 there.
- Per-channel bandwidth caps (perChMaxRingLL128Bws 20 GB/s Ampere, 36.7 Hopper; perChMaxTreeBws; LL's
  llMaxBws across nodes 22.5 / 19.0 GB/s busbw on AMD hosts (DGX A100), 39.0 / 20.4 on Intel (DGX H100),
  for 2 / 4+ nodes) need a channel count, which mlsim does not model (its rings and trees are per NIC, not
  per channel: NCCL may run two channels per NIC): its LL across nodes runs at a quarter of the NICs' rate
  (48 GB/s on 8 HDR NICs), above NCCL's LL cap.
- getNetOverhead (1 us Intel, 2 us AMD hosts; x3 for Simple) as a floor on a ring step's latency is not
  modelled: in mlsim's lock-step every step of a ring across nodes already pays the network's 2.7 us and
  more.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, mlsim_path, report  # noqa: E402
from net_nccl_busbw import busbw, check  # noqa: E402  (the same +-5 % busbw check)

TOL = 0.05
TOL_TIME = 0.10
H100_NOTE = ("the ring (8 rings, one per NIC) is held by the NICs' payload rate, 8 x 48 GB/s = 384 GB/s, "
             "the maintainers' per-NIC figure (nccl-tests#290, #267); this cluster measured ~41 GB/s per NIC "
             "at 8 GiB, for reasons its report does not give")
LATENCY_NOTE = ("the automatic choice takes NCCL's tree (a chain per node, NCCL's double binary tree between "
                "nodes, its tree network latency 5.0 us LL per step; NCCL v2.30.7's per-call 6.8 us); NCCL's "
                "own formula at 8 B is 35.2 us, within 8 % of the measured 38.37 us; at 512 KiB and 8 MiB "
                "mlsim's tree is 17-23 % fast (the reasons are not modelled: NCCL's per-channel LL / LL128 "
                "bandwidth caps, llMaxBws and perChMaxTreeLL128Bw, are one candidate)")


def time_us(mlsim, system, op, size, algorithm="auto"):
    """mlsim's time (us) of one call, with the algorithm and protocol it ran."""
    out = subprocess.run([mlsim, "collective", "--system", system, "--op", op, "--sizes", f"{size}:{size}",
                          "--algorithm", algorithm], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stdout + out.stderr)
    for line in out.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            f = line.split()
            return float(f[5]), f[8], f[9]
    sys.exit(f"no result row from mlsim for {system} {op} {size}")


def cut(preset, tmp, name, old, new):
    """configs/systems/<preset>.yaml with the text `old` (which must occur once) replaced by `new`."""
    text = open(os.path.join(ROOT, "configs", "systems", f"{preset}.yaml")).read()
    assert text.count(old) == 1, f"{preset}.yaml changed shape ({old!r})"
    text = text.replace(old, new).replace(f"name: {preset}\n", f"name: {name}\n")
    path = os.path.join(tmp, f"{name}.yaml")
    open(path, "w").write(text)
    return path


def main():
    mlsim = mlsim_path(sys.argv[1:])
    gaps = 0
    with tempfile.TemporaryDirectory() as tmp:
        a100_2x1 = cut("dgx-a100-2node", tmp, "a100-2node-1gpu", "    - name: dgx0\n      devices: 8\n"
                       "    - name: dgx1\n      devices: 8\n", "    - name: dgx0\n      devices: 1\n"
                       "    - name: dgx1\n      devices: 1\n")
        got, alg, proto = busbw(mlsim, a100_2x1, "all-reduce", "8GiB")
        gaps += check("A100, one HDR NIC per node, all-reduce 8 GiB, 2 nodes", "NVIDIA/nccl#412", 24, got, alg,
                      proto)
        h100_2x1 = cut("superpod-h100-1024", tmp, "h100-2node-1gpu", "{name: dgx, devices: 8, count: 128}",
                       "{name: dgx, devices: 1, count: 2}")
        got, alg, proto = busbw(mlsim, h100_2x1, "all-reduce", "8GiB")
        gaps += check("H100, one NDR NIC per node, all-reduce 8 GiB, 2 nodes", "NVIDIA/nccl-tests#290 (46-48); "
                      "#267 (48-49)", 47.5, got, alg, proto)

        got, alg, proto = busbw(mlsim, "dgx-a100-2node", "all-reduce", "8GiB", "ring")
        gaps += check("DGX A100 x 2 (8 x HDR each), all-reduce 8 GiB, ring", "NVIDIA/nccl#812", 192, got, alg,
                      proto)
        got, alg, proto = busbw(mlsim, "dgx-a100-16node", "all-reduce", "8GiB")
        gaps += check("DGX A100 x 16 (8 x HDR each), all-reduce 8 GiB, automatic choice", "NVIDIA/nccl#812",
                      192, got, alg, proto)
        got, alg, proto = busbw(mlsim, "superpod-a100", "all-reduce", "8GiB")
        gaps += check("SuperPOD A100, 128 nodes (8 x HDR each), all-reduce 8 GiB, automatic choice",
                      "NVIDIA/nccl#812", 192, got, alg, proto,
                      "the tree (2 per NIC: 16 trees) runs ~1,050 lock-step steps of 512 KiB chunks, each "
                      "paying the network path's 2.7 us and Simple's 11.3 us before the next chunk moves (~15 "
                      "ms of 106 ms); NCCL keeps up to 8 chunks in flight per connection (NCCL_STEPS), hiding "
                      "its per-step latency behind the transfer. 181.7 GB/s with --protocol ideal")

        h100_4 = cut("superpod-h100-1024", tmp, "h100-4node", "{name: dgx, devices: 8, count: 128}",
                     "{name: dgx, devices: 8, count: 4}")
        src = "ZiyanIshani/vpbenchmarking results/nccl/nccl_multinode/nccl_allreduce_20260224_225706.txt"
        for size, published in (("1GiB", 324.48), ("8GiB", 330.93)):
            got, alg, proto = busbw(mlsim, h100_4, "all-reduce", size)
            gaps += check(f"DGX H100 x 4 (8 x NDR each), all-reduce {size}, automatic choice", src, published,
                          got, alg, proto, H100_NOTE)
        # Small and medium sizes of the same measurement: the time of one call (out-of-place), where the
        # per-call and per-step latencies dominate. Tolerance +-10 %: the file's in-place and out-of-place
        # times differ by up to 12 % at 2 MiB, under 1 % at these sizes.
        for size, published_us in (("8B", 38.37), ("512KiB", 79.34), ("8MiB", 230.19), ("128MiB", 944.74)):
            t_us, alg, proto = time_us(mlsim, h100_4, "all-reduce", size)
            err = t_us / published_us - 1
            gaps += report(f"DGX H100 x 4 (8 x NDR each), all-reduce {size}, time, automatic choice", src,
                           f"{published_us:g} us", f"{t_us:.1f} us ({alg}, {proto})",
                           "PASS" if abs(err) <= TOL_TIME else "GAP", f"+-{TOL_TIME * 100:.0f} %", error=err,
                           note=LATENCY_NOTE if abs(err) > TOL_TIME and err < 0 else "")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())

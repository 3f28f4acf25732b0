"""Kernels of one layer in an Nsight Systems cuda_gpu_trace CSV of `bench_cuda --layer-trace`.

Usage: layer_trace.py TRACE_CSV [REPLAYS]. The trace holds REPLAYS (default 16) replays of the same
layer graph; two from the middle are printed, kernel by kernel: start and end (µs from the layer's first
kernel), duration, stream and name, then the layer's span and its busy time per stream.
"""
import csv
import re
import sys


def load(path):
    rows = []
    with open(path, newline='') as f:
        for r in csv.DictReader(f):
            try:
                start = int(float(r.get('Start (ns)') or r['Start']))
                dur = int(float(r.get('Duration (ns)') or r['Duration']))
            except (KeyError, ValueError, TypeError):
                continue
            name = r.get('Name', '')
            if 'memcpy' in name.lower() or 'memset' in name.lower():
                continue
            rows.append((start, start + dur, r.get('Strm', r.get('Stream', '?')), name))
    rows.sort()
    return rows


def short(name):
    name = re.sub(r'\(.*', '', name)
    name = re.sub(r'void |dsinfer::|cuda::|\(anonymous namespace\)::', '', name)
    return name[:60]


def main():
    rows = load(sys.argv[1])
    replays = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    per = len(rows) // replays
    if per == 0:
        print('no kernels in the trace')
        return 1
    print(f'{len(rows)} kernels, {per} a layer')
    for k in (replays // 2, replays // 2 + 1):
        seg = rows[k * per:(k + 1) * per]
        t0 = seg[0][0]
        t1 = max(e for _, e, _, _ in seg)
        print(f'layer {k}: span {(t1 - t0) / 1e3:.1f} us')
        busy = {}
        for s, e, st, n in seg:
            busy[st] = busy.get(st, 0) + (e - s)
            print(f'{(s - t0) / 1e3:7.1f} {(e - t0) / 1e3:7.1f} {(e - s) / 1e3:6.1f}  stream {st:>3}  {short(n)}')
        for st, b in sorted(busy.items()):
            print(f'  stream {st}: {b / 1e3:.1f} us of kernels')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Per-step busy and idle time of a GPU trace (an Nsight Systems cuda_gpu_trace CSV).

Usage: timeline_gaps.py TRACE_CSV [STEPS_SHOWN]. Steps start at each launch whose name contains
"embed" (a decode step's first kernel); the last STEPS_SHOWN steps followed by another are reported.
"""
import csv
import sys


def field(row, *names):
    for n in names:
        if n in row and row[n] not in (None, ''):
            return row[n]
    raise KeyError(names[0])


def load(path):
    ops = []
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            try:
                start = int(float(field(row, 'Start (ns)', 'Start')))
                dur = int(float(field(row, 'Duration (ns)', 'Duration')))
            except (KeyError, ValueError):
                continue
            ops.append((start, start + dur, field(row, 'Name')))
    ops.sort()
    return ops


def report(ops, shown):
    starts = [i for i, (_, _, n) in enumerate(ops) if 'embed' in n.lower()]
    steps = [(ops[a:b], ops[b][0]) for a, b in zip(starts, starts[1:])]
    if not steps:
        print('no complete decode step found (no two "embed" launches)')
        return 1
    for seg, next_start in steps[-shown:]:
        t0, t1 = seg[0][0], max(e for _, e, _ in seg)
        busy, gaps = 0, []
        cur_s, cur_e = seg[0][0], seg[0][1]
        for s, e, n in seg[1:]:
            if s > cur_e:
                busy += cur_e - cur_s
                gaps.append((s - cur_e, n))
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        busy += cur_e - cur_s
        span = t1 - t0
        print(f'step: {span / 1e3:.1f} us, busy {busy / 1e3:.1f} us ({100 * busy / span:.1f}%), '
              f'idle {(span - busy) / 1e3:.1f} us in {len(gaps)} gaps, {len(seg)} kernels and copies; '
              f'{(next_start - t1) / 1e3:.1f} us more until the next step starts (host: logits, sampling, '
              f'the next launches)')
        for g, n in sorted(gaps, reverse=True)[:10]:
            print(f'  {g / 1e3:7.1f} us idle before {n[:100]}')
    return 0


if __name__ == '__main__':
    sys.exit(report(load(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3))

"""Comparison speed: Dice comparisons per second, unblocked, one thread and two; blocked linkage.

Data (seeded): random 1024-bit filters, each bit set with probability 1/2 (~50 % fill); a tenth of b
are near-duplicates of rows of a (each bit flipped with probability 1/32). Threshold 0.8.
Three more sets show what the kernel's shortcuts are worth:
- varied fill: fills drawn from 20-70 %, where the popcount length filter skips pairs unread;
- equal popcounts: every filter has exactly 512 bits set (as balanced hardening makes them), so
  the length filter skips nothing and only the prefix bound helps;
- no shortcut: equal popcounts and a first half shared by every filter, so neither the length
  filter nor the prefix bound can rule a pair out early: the raw AND-popcount rate.
A comparison is one (i, j) pair of the n × m, whether or not a shortcut skipped it. Each figure is
the best of three runs after a warm-up call, so numba's compile time is not counted; numba's
thread count is set in-process.

``--scale N`` links N × N with Hamming LSH blocking (half of b near-duplicates of a, flip rate 1-10 %)
and reports wall time, peak RSS and pairs completeness against an unblocked run on 1,000 rows of a.
``--crossover`` times unblocked against blocked for a few sizes (behind ``choose_blocking``).

    python benchmarks/compare.py [--n 20000] [--scale 100000] [--crossover]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, peak_rss_mib

from linkage.matching._blocking import blocked_dice_pairs, pairs_completeness
from linkage.matching._kernels import dice_pairs

BITS = 1024
THRESHOLD = 0.8


CHUNK = 2_000  # rows drawn at a time: small, so the linking, not the data, sets the peak RSS


def random_bits(rng: np.random.Generator, probability: float | np.ndarray, n: int) -> np.ndarray:
    """(n, BITS // 64) filters, bit set with the row's probability."""
    probability = np.broadcast_to(np.asarray(probability, dtype=float), (n,))
    out = np.empty((n, BITS // 64), dtype=np.uint64)
    for start in range(0, n, CHUNK):
        p = probability[start : start + CHUNK, None]
        bits = rng.random((len(p), BITS), dtype=np.float32) < p
        out[start : start + CHUNK] = np.packbits(bits, axis=1, bitorder="little").view(np.uint64)
    return out


def random_filters(rng: np.random.Generator, n: int, fill: float | np.ndarray = 0.5) -> np.ndarray:
    if np.isscalar(fill) and fill == 0.5:  # every bit of a random word: exactly fill 1/2
        return rng.integers(0, 2**64, size=(n, BITS // 64), dtype=np.uint64, endpoint=False)
    return random_bits(rng, fill, n)


def flipped(rng: np.random.Generator, filters: np.ndarray, rate: float | np.ndarray) -> np.ndarray:
    return filters ^ random_bits(rng, rate, filters.shape[0])


def balanced_filters(rng: np.random.Generator, n: int) -> np.ndarray:
    order = np.argsort(rng.random((n, BITS)), axis=1)
    bits = np.zeros((n, BITS), dtype=bool)
    np.put_along_axis(bits, order[:, : BITS // 2], True, axis=1)
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).copy()


def datasets(n: int, seed: int = 20240601) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    a, b = random_filters(rng, n), random_filters(rng, n)
    b[: n // 10] = flipped(rng, a[: n // 10], 1 / 32)
    varied_a = random_filters(rng, n, rng.uniform(0.2, 0.7, n))
    varied_b = random_filters(rng, n, rng.uniform(0.2, 0.7, n))
    varied_b[: n // 10] = flipped(rng, varied_a[: n // 10], 1 / 32)
    equal_a, equal_b = balanced_filters(rng, n), balanced_filters(rng, n)
    plain_a, plain_b = equal_a.copy(), equal_b.copy()
    half = BITS // 128
    plain_a[:, :half] = plain_b[:, :half] = equal_a[0, :half]  # shared first half: bound never fires
    return {
        "50% fill": (a, b),
        "varied fill": (varied_a, varied_b),
        "equal popcounts": (equal_a, equal_b),
        "no shortcut": (plain_a, plain_b),
    }


def comparisons_per_second(a: np.ndarray, b: np.ndarray, threads: int, runs: int = 3) -> tuple[float, float]:
    """(comparisons a second, cores' worth of CPU the best run got): other work on the machine
    shows as a CPU share below the thread count."""
    numba.set_num_threads(threads)
    dice_pairs(a[:64], b[:256], THRESHOLD)  # warm-up: compile outside the timing
    best, share = float("inf"), 0.0
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        dice_pairs(a, b, THRESHOLD)
        seconds = time.perf_counter() - start
        if seconds < best:
            best, share = seconds, (time.process_time() - cpu) / seconds
    return a.shape[0] * b.shape[0] / best, share


def unblocked(n: int) -> str:
    threads = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    figures = {}
    for name, (a, b) in datasets(n).items():
        measured = [comparisons_per_second(a, b, t) for t in threads]
        rates = [rate / 1e6 for rate, _ in measured]
        figures[name] = rates
        shown = ", ".join(
            f"{t} thread{'s' * (t > 1)} {r:7.1f} M cmp/s (cpu {share:.2f})" for t, r, (_, share) in zip(threads, rates, measured)
        )
        print(f"  {name:16s} {shown}")
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    def pair(name: str) -> str:
        return " / ".join(f"{r:.1f}" for r in figures[name])

    main = figures["50% fill"]
    head = f"compare: 1 thread {main[0]:.1f} M cmp/s" + (f", 2 threads {main[1]:.1f} M cmp/s" if len(main) > 1 else "")
    return (
        f"{head} (50% fill, t={THRESHOLD}); threads {'/'.join(map(str, threads))} in M cmp/s: varied fill"
        f" {pair('varied fill')}, equal popcounts {pair('equal popcounts')}, no shortcut {pair('no shortcut')};"
        f" {BITS}-bit, n={n}x{n}"
    )


def linked_sets(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = random_filters(rng, n)
    b = random_filters(rng, n)
    half = n // 2
    b[:half] = flipped(rng, a[:half], rng.uniform(0.01, 0.10, half))
    return a, b[rng.permutation(n)]


def blocked(n: int) -> str:
    a, b = linked_sets(n)
    blocked_dice_pairs(a[:2000], b[:2000], THRESHOLD, rng=np.random.default_rng(0))  # warm-up
    last = [time.perf_counter()]

    def progress(report) -> None:
        if time.perf_counter() - last[0] > 10 or report.band == report.bands:
            last[0] = time.perf_counter()
            print(f"    band {report.band}/{report.bands}: {report.candidates:,} candidates, {report.pairs:,} pairs,"
                  f" {report.skipped:,} skipped", file=sys.stderr)  # fmt: skip

    before = peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    i, j, _ = blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(1), progress=progress)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss = peak_rss_mib()
    sample = np.unique(np.linspace(0, n - 1, min(1000, n)).astype(np.int64))
    truth_i, truth_j, _ = dice_pairs(a[sample], b, THRESHOLD)
    mine = np.isin(i, sample)
    found = (np.searchsorted(sample, i[mine]), j[mine])
    completeness = pairs_completeness(found, (truth_i, truth_j))
    return (
        f"blocked {n}x{n}: {seconds:.1f} s ({cpu:.1f} s CPU), peak RSS {rss:.0f} MiB ({before:.0f} before linking),"
        f" {len(i):,}"
        f" pairs, pairs completeness"
        f" {completeness:.4f} on {len(sample)} rows ({len(truth_i)} true pairs), {numba.get_num_threads()} threads"
    )


def crossover() -> None:
    for n in (5_000, 10_000, 20_000, 40_000):
        a, b = linked_sets(n)
        dice_pairs(a[:64], b[:64], THRESHOLD)
        blocked_dice_pairs(a[:500], b[:500], THRESHOLD, rng=np.random.default_rng(0))
        start, cpu = time.perf_counter(), time.process_time()
        dice_pairs(a, b, THRESHOLD)
        middle, cpu_middle = time.perf_counter(), time.process_time()
        blocked_dice_pairs(a, b, THRESHOLD, rng=np.random.default_rng(1))
        end, cpu_end = time.perf_counter(), time.process_time()
        print(
            f"  n={n}: {n * n:.1e} pairs, all pairs {middle - start:.2f} s (cpu {cpu_middle - cpu:.2f} s),"
            f" LSH {end - middle:.2f} s (cpu {cpu_end - cpu_middle:.2f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="rows a side for the unblocked rates")
    parser.add_argument("--scale", type=int, default=0, help="also link N × N with LSH blocking")
    parser.add_argument("--crossover", action="store_true", help="time unblocked against LSH for a few sizes")
    args = parser.parse_args()
    line = unblocked(args.n)
    if args.crossover:
        crossover()
    if args.scale:
        line += "; " + blocked(args.scale)
    print(f"{line}; {machine_line()}")


if __name__ == "__main__":
    main()

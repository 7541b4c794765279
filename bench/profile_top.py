"""Summarise a py-spy collapsed-stack file (`bench/run.py --profile DIR`): the functions with
the most samples, by self time and by inclusive time, filtered to a package if asked.

    .venv/bin/python bench/profile_top.py DIR/S4.txt [--top 25] [--match sellerdesk]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(args.file).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():  # a frame name broken over two lines
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            if args.match in frame:
                inclusive[frame] += samples
    print(f"{total} samples")
    print("-- self")
    for frame, samples in own.most_common(args.top):
        print(f"{100 * samples / total:5.1f}%  {frame}")
    print("-- inclusive")
    for frame, samples in inclusive.most_common(args.top):
        print(f"{100 * samples / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()

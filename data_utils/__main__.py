"""``python -m data_utils --root DIR``: put verified Fashion-MNIST files under DIR/FashionMNIST/raw."""

from __future__ import annotations

import argparse
import sys

from .fashion_mnist import CorruptDataError, DataNotFoundError, default_root, ensure_fashion_mnist


def main(argv: list[str] | None = None) -> int:
    """Fetch and verify the data; print where it is; exit 1 with advice when it cannot."""
    parser = argparse.ArgumentParser(prog="python -m data_utils", description=__doc__)
    parser.add_argument("--root", default=None, help="data root (default: $SIAMESE_DATA_ROOT or ./data)")
    parser.add_argument("--no-download", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    try:
        raw = ensure_fashion_mnist(args.root or default_root(), download=not args.no_download)
    except (DataNotFoundError, CorruptDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST ready and verified in {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m provisioner.bench.throughput flood|probe JSON``: one load generator child
of ``bench throughput`` (:func:`provisioner.bench.throughput.loadgen.main`)."""

import sys

from provisioner.bench.throughput.loadgen import main

if __name__ == "__main__":
    main(sys.argv[1:])

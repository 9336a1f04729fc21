"""Every style statistic as a yardstick for every output of a sweep.

    python scripts/sweep.py --config=configs/sweep_style_losses.py \
        --workdir=runs/style_losses
    python scripts/style_eval.py --sweep=runs/style_losses

Scores each member's final.png by gram, gaussian_w2, sliced_w2, mrf and
histogram (nst_jax/evals/style_scores.py: fixed layers and directions, so
rows compare) and by the relu4_2 structure loss to the photo, against the
member's own content and first style at the output's size. Prints a
markdown table, rows = the statistic the member optimised, columns = the
yardstick, each cell over the column's lowest (1.00 = best), and last the
photo the runs started from on the same scale; --out writes
the raw scores as JSON.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402

from nst_jax.app import cli, exits  # noqa: E402
from nst_jax.evals import style_scores  # noqa: E402

_SWEEP = flags.DEFINE_string("sweep", None, "a sweep directory "
                             "(scripts/sweep.py --workdir)")
_OUT = flags.DEFINE_string("out", "", "write the raw scores here (JSON)")


def main(argv):
    cli.no_arguments(argv)
    sys.exit(exits.call(
        lambda: style_scores.main(_SWEEP.value, _OUT.value),
        interrupted="interrupted: nothing written", done=lambda _: None))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)

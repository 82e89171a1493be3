"""What every reproduction script in analysis/reproduce/ shares: finding mlsim, and reporting a result.

A script reports each published figure it reproduces with report(): one line for people, then one line
for analysis/reproduce/run_all.py, `RESULT ` followed by a JSON object with the fields

    name       what is compared ("STREAM Triad, EPYC 9654 socket")
    source     where the published figure comes from (paper and table or figure, repository file)
    published  the published figure, as text with its unit ("378 GB/s")
    mlsim      mlsim's figure, as text with its unit
    error      mlsim / published - 1 (a number; null when the figure is not a ratio to one number)
    tolerance  the accepted range, as text ("+-5 %", "359-397 GB/s")
    status     PASS (within the tolerance), KNOWN GAP (outside it, within a documented gap bound) or GAP
    note       anything else (the reason of a known gap); may be empty

The runner also accepts a plain line that starts with PASS, KNOWN GAP or GAP (scripts written before
this module), so the convention is backward compatible.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MLSIM = os.path.join(ROOT, "build", "mlsim")
DEVICES = os.path.join(ROOT, "configs", "devices")  # the device presets
DATA = os.path.join(ROOT, "analysis", "reproduce", "data")  # measurements kept with the scripts
STATUSES = ("PASS", "KNOWN GAP", "GAP")


def mlsim_path(argv):
    """The mlsim binary from a script's arguments, which may give it as `--mlsim PATH`, `--mlsim=PATH` or
    as the first positional argument; removes it from argv (a list, changed in place) and returns it
    (default build/mlsim). Exits 2 when it is not an executable file."""
    path = None
    for i, a in enumerate(argv):
        if a == "--mlsim" and i + 1 < len(argv):
            path = argv[i + 1]
            del argv[i:i + 2]
            break
        if a.startswith("--mlsim="):
            path = a.split("=", 1)[1]
            del argv[i]
            break
    if path is None:
        for i, a in enumerate(argv):
            if not a.startswith("-"):
                # The value of an option (e.g. `--fidelity wave`) is not the binary.
                if i > 0 and argv[i - 1].startswith("--") and "=" not in argv[i - 1]:
                    continue
                path = argv.pop(i)
                break
    path = path or DEFAULT_MLSIM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        print(f"{os.path.basename(sys.argv[0])}: no mlsim at {path} (build it, or pass --mlsim PATH)",
              file=sys.stderr)
        sys.exit(2)
    return path


def pop_option(argv, name, default):
    """The value of `name VALUE` in argv (a list, changed in place: both removed), or default."""
    if name in argv:
        i = argv.index(name)
        if i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
    return default


def measured_args(default_data):
    """For scripts comparing measurements kept in data/: from sys.argv, the mlsim binary (mlsim_path),
    `--fidelity` (default wave) and `--data FILE` (default default_data), read as JSON."""
    args = list(sys.argv[1:])
    fidelity = pop_option(args, "--fidelity", "wave")
    data_path = pop_option(args, "--data", default_data)
    mlsim = mlsim_path(args)
    try:
        with open(data_path) as f:
            return mlsim, fidelity, json.load(f)
    except (OSError, ValueError) as e:
        print(f"{os.path.basename(sys.argv[0])}: cannot read the measurements {data_path}: {e}", file=sys.stderr)
        sys.exit(2)


def fmt_time(s):
    """Seconds as us below a millisecond, else ms."""
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.3f} ms"


def report(name, source, published, mlsim, status, tolerance, error=None, note=""):
    """Prints the human line and the RESULT line; returns 0 for PASS and KNOWN GAP, 1 for GAP."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    err = "" if error is None else f", error {error * 100:+.1f} %"
    print(f"{status} {name}: mlsim {mlsim}, published {published}{err} (tolerance {tolerance}; {source})"
          f"{'; ' + note if note else ''}")
    print("RESULT " + json.dumps({"name": name, "source": source, "published": published, "mlsim": mlsim,
                                  "error": error, "tolerance": tolerance, "status": status, "note": note}))
    sys.stdout.flush()
    return 1 if status == "GAP" else 0

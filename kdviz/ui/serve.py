"""`python -m kdviz.ui.serve run app.py ...` (`make run`): `streamlit run` that exits cleanly on Ctrl-C and SIGTERM.

Streamlit's web server (uvicorn) answers SIGINT and SIGTERM by stopping, then restores the handlers it found and raises
the signal again: with Python's defaults that is a KeyboardInterrupt ("Aborted!", exit 1) or death by SIGTERM, with
training threads still inside torch. The handlers installed here are the ones it finds: the signal becomes an
ordinary exit (code 0), whose exit hook (kdviz.runs.stopping) stops background training at its next step and marks
live runs interrupted.
"""
import signal
import sys


def _exit_cleanly(signal_number, frame) -> None:
    raise SystemExit(0)


def main() -> int:
    from streamlit.web import cli

    from kdviz.runs import stopping  # noqa: F401 (its exit hook, registered before any run or task exists)

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, _exit_cleanly)
    sys.argv = ["streamlit", *sys.argv[1:]]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())

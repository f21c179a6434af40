"""`streamlit run ...` with every script run timed in the server process (bench/script_timer.py), for
bench/hall_load.py.

    KDVIZ_SCRIPT_TIMES=/tmp/times.tsv python -m bench.hall_server run app.py --server.port 8501

Each script run (full or fragment rerun) appends `end_time<TAB>seconds<TAB>full|fragment<TAB>page<TAB>session` to the
file named by KDVIZ_SCRIPT_TIMES; without it, the server runs untimed. The Streamlit server is this very process (no child).
"""
import os
import sys

from bench import script_timer

if os.environ.get("KDVIZ_SCRIPT_TIMES"):
    script_timer.record_to(os.environ["KDVIZ_SCRIPT_TIMES"])

from streamlit.web import cli  # noqa: E402

if __name__ == "__main__":
    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(cli.main(prog_name="streamlit"))

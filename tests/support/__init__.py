"""What the browser and protocol tests start and drive (the app server, Chromium, a Streamlit-protocol client); the
hall benchmarks in bench/ use the same."""

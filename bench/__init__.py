"""Benchmarks (each prints ratios measured side by side) and the hall's load generator; the app server and the
Streamlit-protocol client they start are the tests' own (tests/support/)."""

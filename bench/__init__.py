"""Benchmark scripts (ratios measured side by side) and their helpers, such as the app server for browser runs."""

"""Page models without Streamlit: soft labels, the image explorer, uploads, runs as tables, and chart builders."""

"""The ML core of kdviz, importable without Streamlit: KD math, data, models, the engine, cached teachers, presets."""

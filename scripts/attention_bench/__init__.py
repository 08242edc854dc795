"""The pieces of scripts/bench_attention.py: what is measured (cases), how (measure), which points (plan), and the
threshold of `implementation="auto"` read off the results (crossover). scripts/gpu_check.py reuses them."""

"""Side-by-side latency measurements: TVM (tuned, untuned) against the runtimes users would otherwise deploy."""

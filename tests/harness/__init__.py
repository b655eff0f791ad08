"""Real engines and services for the integration tests, the demo and the benchmarks."""

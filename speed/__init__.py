"""Performance benchmarks (speed of builders components)."""

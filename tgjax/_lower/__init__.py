"""Planning (DAG, CSE, contraction paths) and JAX code emission."""

"""Hardware constant tables, one module per class (generated-looking, from the public headers)."""

"""Boot: what runs at startup (verify image, bring up device, self-test, serve) and system images."""

"""Stand-alone tools (weight conversion); not imported by the training or evaluation code."""
